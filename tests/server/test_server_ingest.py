"""POST /api/v1/telemetry/batch against a real PostgreSQL."""

from __future__ import annotations

import asyncio
import gzip
import logging
import uuid
import zlib
from datetime import UTC, datetime, timedelta

import asyncpg
import orjson
import pytest
from server_helpers import (
    INGEST_KEYS,
    READ_KEY,
    Running,
    StartServer,
    make_batch,
    make_event,
    raw_request,
)


async def _count(db: asyncpg.Connection, table: str = "events") -> int:
    return int(await db.fetchval(f"SELECT count(*) FROM {table}"))


async def test_batch_is_stored_once_and_a_retry_is_a_no_op(
    server: Running, db: asyncpg.Connection
) -> None:
    events = [make_event(properties={"duration_ms": i}) for i in range(5)]
    batch = make_batch(events)
    status, body, _ = await server.post_batch(batch, idempotency_key="batch-1")
    assert (status, body) == (200, {"accepted": 5, "duplicates": 0, "rejected": []})
    assert await _count(db) == 5

    # The same batch with the same key: the original answer, nothing new stored.
    status, again, headers = await server.post_batch(batch, idempotency_key="batch-1")
    assert (status, again) == (200, body)
    assert headers["Idempotent-Replayed"] == "true"
    assert await _count(db) == 5
    assert await db.fetchval("SELECT sum(events) FROM rollup_daily") == 5

    # Same events under a new batch id: deduped on the event uuid.
    status, body, _ = await server.post_batch(batch, idempotency_key="batch-2")
    assert (status, body) == (200, {"accepted": 0, "duplicates": 5, "rejected": []})
    assert await _count(db) == 5
    assert await db.fetchval("SELECT sum(events) FROM rollup_daily") == 5


async def test_concurrent_twins_store_once(server: Running, db: asyncpg.Connection) -> None:
    batch = make_batch([make_event() for _ in range(20)])
    results = await asyncio.gather(
        *(server.post_batch(batch, idempotency_key="twin") for _ in range(4))
    )
    assert {r[0] for r in results} == {200}
    assert {r[1]["accepted"] for r in results} == {20}
    assert await _count(db) == 20
    assert await db.fetchval("SELECT sum(events) FROM rollup_daily") == 20


async def test_idempotency_key_reused_for_another_batch_is_refused(server: Running) -> None:
    await server.post_batch(
        make_batch([make_event()], "5d3c0a8e-0000-4000-8000-000000000001"), idempotency_key="k"
    )
    status, body, _ = await server.post_batch(
        make_batch([make_event()], "5d3c0a8e-0000-4000-8000-000000000001"), idempotency_key="k"
    )
    assert status == 422
    assert "different batch" in body["error"]


async def test_identity_encoding_and_duplicates_within_a_batch(
    server: Running, db: asyncpg.Connection
) -> None:
    event = make_event()
    status, body, _ = await server.post_batch(make_batch([event, event]), compress=False)
    assert (status, body) == (200, {"accepted": 1, "duplicates": 1, "rejected": []})
    assert await _count(db) == 1


async def test_missing_or_wrong_key_is_401_and_stores_nothing(
    server: Running, db: asyncpg.Connection
) -> None:
    batch = make_batch([make_event()])
    for key in (None, "wrong", INGEST_KEYS[0] + "x", READ_KEY, ""):
        status, body, headers = await server.post_batch(batch, key=key)
        assert status == 401, key
        assert headers["WWW-Authenticate"] == "Bearer"
        assert body == {"error": "missing or wrong bearer key"}
    assert await _count(db) == 0
    assert await _count(db, "rollup_daily") == 0
    assert await _count(db, "idempotency_keys") == 0
    # Both keys of a rotation are accepted.
    for key in INGEST_KEYS:
        status, _, _ = await server.post_batch(make_batch([make_event()]), key=key)
        assert status == 200


async def test_body_over_the_limit_is_413(
    start_server: StartServer, db: asyncpg.Connection
) -> None:
    server = await start_server(max_body_bytes=4096)
    big = make_batch([make_event(properties={"text": "x" * 5000})])
    status, body, _ = await server.post_batch(big, compress=False)
    assert status == 413
    assert "limit" in body["error"]
    # A small gzip that inflates past the limit is stopped too.
    bomb = gzip.compress(b'{"anonymous_id": "' + b" " * 100_000 + b'"}')
    assert len(bomb) < 4096
    async with server.session.post(
        f"{server.url}/api/v1/telemetry/batch",
        data=bomb,
        headers={
            "Authorization": f"Bearer {INGEST_KEYS[0]}",
            "Content-Type": "application/json",
            "Content-Encoding": "gzip",
        },
    ) as resp:
        assert resp.status == 413
    assert await _count(db) == 0


async def test_event_over_the_limit_and_too_many_events_are_413(
    start_server: StartServer,
    db: asyncpg.Connection,
) -> None:
    server = await start_server(max_event_bytes=1000, max_events_per_batch=10)
    events = [make_event(), make_event(properties={"text": "y" * 2000})]
    status, body, _ = await server.post_batch(make_batch(events))
    assert status == 413
    assert body["index"] == 1
    status, body, _ = await server.post_batch(make_batch([make_event() for _ in range(11)]))
    assert status == 413
    assert await _count(db) == 0


async def test_malformed_events_get_reasons_by_index_and_valid_ones_are_stored(
    server: Running, db: asyncpg.Connection
) -> None:
    good = [make_event(), make_event(event="tool.call.failed")]
    bad_uuid = make_event(uuid="not-a-uuid")
    no_event = make_event()
    del no_event["event"]
    naive_time = make_event(timestamp=None)
    naive_time["timestamp"] = "2026-11-24T21:00:00"
    events = [
        good[0],
        bad_uuid,
        "just a string",
        no_event,
        make_event(extra_field=1),
        naive_time,
        make_event(properties=[1, 2]),  # type: ignore[arg-type]
        make_event(event="bad\nname"),
        make_event(properties={"text": "nul\u0000byte"}),
        good[1],
    ]
    status, body, _ = await server.post_batch(make_batch(events))
    assert status == 200
    assert body["accepted"] == 2
    assert body["duplicates"] == 0
    reasons = {r["index"]: r["reason"] for r in body["rejected"]}
    assert sorted(reasons) == [1, 2, 3, 4, 5, 6, 7, 8]
    assert reasons[1] == "uuid: not a valid UUID"
    assert reasons[2] == "event must be a JSON object"
    assert reasons[3] == "event: required"
    assert reasons[4] == "unknown field 'extra_field'"
    assert "offset" in reasons[5]
    assert reasons[6] == "properties: must be a JSON object"
    assert reasons[7] == "event: contains control characters"
    assert reasons[8] == "properties: contains a NUL character"
    stored = {str(r["uuid"]) for r in await db.fetch("SELECT uuid FROM events")}
    assert stored == {e["uuid"] for e in good}


async def test_unusable_bodies_are_400(server: Running, db: asyncpg.Connection) -> None:
    cases = [
        (None, b"{not json"),
        (None, b"[]"),
        ({"events": []}, None),
        ({"anonymous_id": "nope", "events": []}, None),
        ({"anonymous_id": str(uuid.uuid4()), "events": {}}, None),
        ({"anonymous_id": str(uuid.uuid4()), "events": [], "extra": 1}, None),
    ]
    for body, raw in cases:
        status, answer, _ = await server.post_batch(body, raw=raw)
        assert status == 400, (body, raw)
        assert answer["error"]
    status, _, _ = await server.post_batch(make_batch([]), idempotency_key="has space")
    assert status == 400
    assert await _count(db) == 0


async def test_rate_limits_answer_429_with_retry_after(start_server: StartServer) -> None:
    from agent_telemetry_server.config import Rate

    server = await start_server(key_rate=Rate(3, 60.0), anonymous_id_rate=Rate(2, 60.0))
    anonymous_id = str(uuid.uuid4())
    statuses = []
    for _ in range(3):
        status, _, headers = await server.post_batch(make_batch([make_event()], anonymous_id))
        statuses.append(status)
    assert statuses == [200, 200, 429]
    assert int(headers["Retry-After"]) >= 1
    # The key's own budget: 3 per minute, now spent (the 429 above used the third).
    status, body, headers = await server.post_batch(make_batch([make_event()]))
    assert status == 429
    assert body["error"] == "rate limit for this key exceeded"
    assert 1 <= int(headers["Retry-After"]) <= 60
    # The other key has its own bucket.
    status, _, _ = await server.post_batch(make_batch([make_event()]), key=INGEST_KEYS[1])
    assert status == 200


async def test_busy_database_answers_503_with_retry_after(start_server: StartServer) -> None:
    from agent_telemetry_server.state import POOL

    server = await start_server(pool_min_size=1, pool_max_size=1, pool_acquire_timeout=0.3)
    async with server.app[POOL].acquire():
        status, body, headers = await server.post_batch(make_batch([make_event()]))
    assert status == 503
    assert headers["Retry-After"] == "5"
    assert "retry" in body["error"]
    status, _, _ = await server.post_batch(make_batch([make_event()]))
    assert status == 200


async def test_locked_table_hits_the_statement_timeout_and_answers_503(
    start_server: StartServer,
    db: asyncpg.Connection,
) -> None:
    server = await start_server(lock_timeout_ms=300, statement_timeout_ms=500)
    async with db.transaction():
        await db.execute("LOCK TABLE events IN ACCESS EXCLUSIVE MODE")
        status, _, headers = await server.post_batch(make_batch([make_event()]))
    assert status == 503
    assert "Retry-After" in headers
    assert await _count(db) == 0


async def test_timestamps_before_1970_or_the_retention_window_are_rejected_one_by_one(
    start_server: StartServer, db: asyncpg.Connection
) -> None:
    server = await start_server(retention_days=30)
    now = datetime.now(UTC)
    good = make_event(timestamp=now - timedelta(days=29))
    year_one = make_event()
    # Year 0 once in UTC: this one used to fail the whole batch with a 500.
    year_one["timestamp"] = "0001-01-01T00:00:00+14:00"
    old_century = make_event()
    old_century["timestamp"] = "1900-01-01T00:00:00Z"
    out_of_window = make_event(timestamp=now - timedelta(days=31))
    bad_received = make_event(received_at="0001-01-01T00:00:00+14:00")
    events = [good, year_one, old_century, out_of_window, bad_received]
    status, body, _ = await server.post_batch(make_batch(events))
    assert status == 200
    assert body["accepted"] == 1
    assert body["rejected"] == [
        {"index": 1, "reason": "timestamp: before 1970"},
        {"index": 2, "reason": "timestamp: before 1970"},
        {"index": 3, "reason": "timestamp: older than the 30-day retention window"},
        {"index": 4, "reason": "received_at: before 1970"},
    ]
    assert {str(r["uuid"]) for r in await db.fetch("SELECT uuid FROM events")} == {good["uuid"]}


async def test_properties_agent_is_free_form_and_stored_cleaned(
    server: Running, db: asyncpg.Connection
) -> None:
    events = [
        make_event(agent=None, properties={"agent": "plan\nner"}),
        make_event(agent=None, properties={"agent": "\n\t"}),
    ]
    status, body, _ = await server.post_batch(make_batch(events))
    assert (status, body) == (200, {"accepted": 2, "duplicates": 0, "rejected": []})
    rows = {str(r["uuid"]): r for r in await db.fetch("SELECT uuid, agent, properties FROM events")}
    assert rows[events[0]["uuid"]]["agent"] == "plan ner"
    assert rows[events[1]["uuid"]]["agent"] is None
    # The properties themselves are stored as sent.
    assert orjson.loads(rows[events[0]["uuid"]]["properties"]) == {"agent": "plan\nner"}


def _request(body: bytes, authorization: bytes, encoding: bytes = b"gzip") -> bytes:
    return (
        b"POST /api/v1/telemetry/batch HTTP/1.1\r\nHost: telemetry\r\n"
        b"Authorization: " + authorization + b"\r\n"
        b"Content-Type: application/json\r\nContent-Encoding: " + encoding + b"\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n" + body
    )


def _status_and_body(answer: bytes) -> tuple[int, bytes]:
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


async def test_a_key_that_is_not_utf8_is_401(server: Running, db: asyncpg.Connection) -> None:
    for key in (b"Bearer \xff\xfe", b"Bearer " + INGEST_KEYS[0].encode() + b"\xe9"):
        answer = await raw_request(server.url, _request(gzip.compress(b"{}"), key))
        status, body = _status_and_body(answer)
        assert status == 401, key
        assert orjson.loads(body) == {"error": "missing or wrong bearer key"}
    assert await _count(db) == 0


async def test_a_body_that_does_not_decode_is_a_clean_400(
    server: Running, db: asyncpg.Connection, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    good = gzip.compress(orjson.dumps(make_batch([make_event() for _ in range(50)])))
    key = f"Bearer {INGEST_KEYS[0]}".encode()
    for broken in (
        good[:20] + b"\xff" * 50 + good[70:],  # corrupt
        good[:-10],  # cut short
        good + b"trailing",  # bytes after the end of the stream
    ):
        # raw_request returns once the server has closed the connection, which comes after
        # aiohttp is done with the request, including anything it would log about it.
        status, body = _status_and_body(await raw_request(server.url, _request(broken, key)))
        errors = [(r.name, r.getMessage()) for r in caplog.records if r.levelno >= logging.WARNING]
        assert errors == []
        assert (status, orjson.loads(body)) == (400, {"error": "body could not be decoded"})
    assert await _count(db) == 0


async def test_deflate_in_zlib_or_raw_form_is_accepted(server: Running) -> None:
    key = f"Bearer {INGEST_KEYS[0]}".encode()
    for wbits in (zlib.MAX_WBITS, -zlib.MAX_WBITS):
        compressor = zlib.compressobj(wbits=wbits)
        batch = orjson.dumps(make_batch([make_event()]))
        body = compressor.compress(batch) + compressor.flush()
        answer = await raw_request(server.url, _request(body, key, b"deflate"))
        status, text = _status_and_body(answer)
        assert (status, orjson.loads(text)["accepted"]) == (200, 1), wbits
