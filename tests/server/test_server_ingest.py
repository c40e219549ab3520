"""POST /api/v1/telemetry/batch against a real PostgreSQL."""

from __future__ import annotations

import asyncio
import gzip
import uuid

import asyncpg
from server_helpers import INGEST_KEYS, READ_KEY, Running, StartServer, make_batch, make_event


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
