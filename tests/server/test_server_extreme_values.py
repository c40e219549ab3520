"""Values at the edge of what JSON allows, sent by one client, against a real PostgreSQL:
they never fail a batch, and nothing stored can make a view answer 500."""

from __future__ import annotations

import math
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import orjson
from server_helpers import Running, make_batch, make_event

from agent_telemetry_server.validation import MAX_DURATION_MS, MAX_PROPERTIES_DEPTH

VIEWS = (
    "/api/v1/telemetry/stats",
    "/api/v1/analytics/agents",
    "/api/v1/analytics/errors",
    "/api/v1/analytics/performance",
    "/api/v1/analytics/overview",
    "/api/v1/analytics/durations",
    "/api/v1/analytics/models",
    "/api/v1/analytics/cost",
    "/api/v1/analytics/tools",
)


async def every_view(server: Running) -> dict[str, Any]:
    """Each view over 30 days; all must answer 200."""
    answers = {}
    for path in VIEWS:
        status, body = await server.get(f"{path}?days=30")
        assert status == 200, (path, body)
        answers[path.rsplit("/", 1)[1]] = body
    return answers


async def test_two_enormous_durations_do_not_break_the_performance_view(
    server: Running,
) -> None:
    """1e308 is a valid JSON number; two of them used to overflow avg() for every reader."""
    events = [make_event(agent="huge", properties={"duration_ms": 1e308}) for _ in range(2)]
    events.append(make_event(agent="sane", properties={"duration_ms": 250}))
    status, body, _ = await server.post_batch(make_batch(events))
    assert (status, body) == (200, {"accepted": 3, "duplicates": 0, "rejected": []})
    views = await every_view(server)
    # The events are kept and counted; only their absurd durations are left out.
    assert views["stats"]["events"] == 3
    assert [
        (row["agent"], row["samples"], row["max_ms"]) for row in views["performance"]["performance"]
    ] == [("sane", 1, 250.0)]
    assert [(d["event"], d["samples"]) for d in views["durations"]["durations"]] == [
        ("agent.run.completed", 1)
    ]


async def test_a_duration_near_the_float_maximum_does_not_fail_its_batch(
    server: Running,
) -> None:
    """1.79e308 used to overflow the histogram bucket and fail the whole batch, so a
    daemon retried it for ever and the installation's uploads stopped."""
    edge = make_event(properties={"duration_ms": 1.79e308, "model": "m", "tool": "t"})
    at_cap = make_event(properties={"duration_ms": MAX_DURATION_MS, "tool": "t"})
    over_cap = make_event(properties={"duration_ms": MAX_DURATION_MS * 1.001, "tool": "t"})
    sane = make_event(properties={"duration_ms": 40, "tool": "t"})
    status, body, _ = await server.post_batch(make_batch([edge, at_cap, over_cap, sane]))
    assert (status, body) == (200, {"accepted": 4, "duplicates": 0, "rejected": []})
    views = await every_view(server)
    tools = views["tools"]["tools"]
    assert [(t["tool"], t["calls"]) for t in tools] == [("t", 4)]
    # Up to the cap a duration counts; past it, as with tokens and cost, it is ignored.
    assert tools[0]["duration"] == {
        "samples": 2, "p50_ms": 40.0, "p95_ms": MAX_DURATION_MS, "max_ms": MAX_DURATION_MS,
    }  # fmt: skip
    models = views["models"]["models"]
    assert [(m["model"], m["calls"], m["duration"]["samples"]) for m in models] == [("m", 1, 0)]


async def test_durations_stored_before_the_cap_are_left_out_of_the_views(
    server: Running, db: asyncpg.Connection
) -> None:
    """Rows a server without the cap stored (1e308 twice) must not make any view 500."""
    ts = datetime.now(UTC) - timedelta(minutes=5)
    anonymous_id = uuid.uuid4()
    await db.executemany(
        "INSERT INTO events (uuid, ts, anonymous_id, event, agent, is_error, duration_ms)"
        " VALUES ($1, $2, $3, 'step', 'old', false, $4)",
        [(uuid.uuid4(), ts, anonymous_id, value) for value in (1e308, 1.7e308, 30.0)],
    )
    await db.execute(
        "INSERT INTO rollup_durations_daily VALUES ($1, 'event', 'step', 0, 1e308, 2),"
        " ($1, 'event', 'step', 0, 30, 1)",
        ts.date(),
    )
    views = await every_view(server)
    assert [
        (r["agent"], r["samples"], r["mean_ms"]) for r in views["performance"]["performance"]
    ] == [("old", 1, 30.0)]
    assert [(d["event"], d["samples"], d["max_ms"]) for d in views["durations"]["durations"]] == [
        ("step", 1, 30.0)
    ]


async def test_the_histogram_bucket_never_overflows(db: asyncpg.Connection) -> None:
    bucket = "SELECT telemetry_duration_bucket($1::float8)"
    for value, expected in ((42.4, 42.0), (1234.0, 1200.0), (1.74e308, 1.7e308)):
        assert await db.fetchval(bucket, value) == expected
    # Rounding this one up to two digits would pass float8's maximum: kept as it is.
    assert await db.fetchval(bucket, 1.79e308) == 1.79e308


async def test_token_totals_past_a_64_bit_integer_are_stored_and_read(
    server: Running,
) -> None:
    """One installation, batches of 1,000 calls of 9.9e14 input tokens each (inside the
    per-event range): the 10th batch used to overflow the day's bigint total and answer
    500, and so did every later batch of that UTC day."""
    anonymous_id = str(uuid.uuid4())
    for _ in range(10):
        events = [
            make_event(properties={"model": "m2", "input_tokens": 9.9e14}) for _ in range(1000)
        ]
        status, body, _ = await server.post_batch(make_batch(events, anonymous_id))
        assert status == 200, body
        assert body["accepted"] == 1000
    views = await every_view(server)
    assert views["stats"]["events"] == 10_000
    # 9.9e18 is beyond a signed 64-bit integer: given as a float, not an error.
    [model] = views["models"]["models"]
    assert (model["model"], model["calls"], model["input_tokens"]) == ("m2", 10_000, 9.9e18)
    assert views["cost"]["total"]["input_tokens"] == 9.9e18
    assert [day["input_tokens"] for day in views["models"]["by_day"]] == [9.9e18]


def _nested(levels: int) -> str:
    """`properties` text nested `levels` deep, the object itself being level 1."""
    inner = "[" * (levels - 1) + "]" * (levels - 1) if levels > 1 else "1"
    return '{"a": ' + inner + "}"


async def test_deeply_nested_properties_reject_that_event_only(
    server: Running, db: asyncpg.Connection
) -> None:
    """Nesting the decoder accepts but orjson cannot encode again (254 levels) used to
    answer 500 for the whole batch."""
    depths = [1, MAX_PROPERTIES_DEPTH, MAX_PROPERTIES_DEPTH + 1, 300, 1000]
    events = [make_event(properties={"depth": depth}) for depth in depths]
    # Built as text: the test's own encoder (orjson) refuses such nesting too.
    texts = [
        orjson.dumps(event).decode().replace(f'{{"depth":{depth}}}', _nested(depth))
        for event, depth in zip(events, depths, strict=True)
    ]
    body = f'{{"anonymous_id": "{uuid.uuid4()}", "events": [{", ".join(texts)}]}}'
    status, answer, _ = await server.post_batch(None, raw=body.encode())
    too_deep = f"properties: nested deeper than {MAX_PROPERTIES_DEPTH} levels"
    assert (status, answer) == (200, {"accepted": 2, "duplicates": 0, "rejected": [
        {"index": 2, "reason": too_deep},
        {"index": 3, "reason": too_deep},
        {"index": 4, "reason": too_deep},
    ]})  # fmt: skip
    stored = await db.fetch("SELECT uuid::text FROM events")
    assert {r["uuid"] for r in stored} == {events[0]["uuid"], events[1]["uuid"]}
    await every_view(server)


async def test_a_number_beyond_a_double_or_a_lone_surrogate_rejects_that_event_only(
    server: Running, db: asyncpg.Connection
) -> None:
    """Valid JSON that orjson refuses (1e400, an unpaired "\\ud800") used to make the whole
    body "not valid JSON", a 400 that lost every good event of the batch with it."""
    good = [make_event(), make_event(properties={"count": 1}), make_event()]
    texts = [orjson.dumps(event).decode() for event in good]
    # Past 64 bits, which the test's own encoder (orjson) refuses to write.
    texts[1] = texts[1].replace('"count":1', f'"count":{2**70}')
    bad = [
        texts[0].replace('"properties":{}', '"properties":{"x":1e400}'),
        texts[0].replace('"properties":{}', '"properties":{"x":-2e999}'),
        texts[0].replace('"agent.run.completed"', '"run\\ud800"'),
        texts[0].replace('"properties":{}', '"properties":{"\\udfff":1}'),
        texts[0].replace('"planner"', '"plan\\udc80ner"'),
    ]
    # A fresh uuid each, so no bad event is a duplicate of the first good one.
    bad = [text.replace(good[0]["uuid"], str(uuid.uuid4())) for text in bad]
    body = f'{{"anonymous_id": "{uuid.uuid4()}", "events": [{", ".join([*texts, *bad])}]}}'
    status, answer, _ = await server.post_batch(None, raw=body.encode())
    unstorable = "properties: cannot be stored as JSON (a number out of range, or a lone surrogate)"
    assert (status, answer) == (200, {"accepted": 3, "duplicates": 0, "rejected": [
        {"index": 3, "reason": unstorable},
        {"index": 4, "reason": unstorable},
        {"index": 5, "reason": "event: contains a lone surrogate, which is not text"},
        {"index": 6, "reason": unstorable},
        {"index": 7, "reason": "agent: contains a lone surrogate, which is not text"},
    ]})  # fmt: skip
    stored = await db.fetch("SELECT uuid::text, properties FROM events")
    assert {r["uuid"] for r in stored} == {event["uuid"] for event in good}
    # A whole number past 64 bits is kept as orjson reads it: a double.
    assert {"count": float(2**70)} in [orjson.loads(r["properties"]) for r in stored]
    await every_view(server)


async def test_bodies_the_second_reading_refuses_are_still_400(server: Running) -> None:
    """The lenient reading (jsonbody.py) takes no more than JSON: NaN and Infinity, bad
    UTF-8 and nesting too deep to read still answer a clean 400, never a 500."""
    event = orjson.dumps(make_event()).decode()
    cases = [
        event.replace('"properties":{}', '"properties":{"x":NaN}'),
        event.replace('"properties":{}', '"properties":{"x":Infinity}'),
        event.replace('"properties":{}', '"properties":{"x":"\\ud800","y":1e400,}'),
    ]
    raws = [f'{{"anonymous_id": "{uuid.uuid4()}", "events": [{c}]}}'.encode() for c in cases]
    raws += [b'{"x": "\\ud800", "y": "\xff"}', b"[" * 200_000 + b"]" * 200_000]
    for raw in raws:
        status, answer, _ = await server.post_batch(None, raw=raw)
        assert (status, answer) == (400, {"error": "body is not valid JSON"}), raw[:80]


async def test_a_duration_of_minus_zero_is_answered_as_zero(
    server: Running, db: asyncpg.Connection
) -> None:
    """-0.0 is in range, so it was kept, and every view answered a duration of -0.0 ms."""
    event = orjson.dumps(make_event(properties={"duration_ms": 0, "tool": "grep"})).decode()
    event = event.replace('"duration_ms":0', '"duration_ms":-0.0')
    body = f'{{"anonymous_id": "{uuid.uuid4()}", "events": [{event}]}}'
    status, answer, _ = await server.post_batch(None, raw=body.encode())
    assert (status, answer["accepted"]) == (200, 1)
    stored = await db.fetchval("SELECT duration_ms FROM events")
    assert (stored, math.copysign(1.0, stored)) == (0.0, 1.0)
    views = await every_view(server)
    figures = [
        *views["performance"]["performance"][0].values(),
        *views["durations"]["durations"][0].values(),
        *views["tools"]["tools"][0]["duration"].values(),
    ]
    numbers = [f for f in figures if isinstance(f, float)]
    assert numbers
    assert all(math.copysign(1.0, n) == 1.0 for n in numbers), figures
