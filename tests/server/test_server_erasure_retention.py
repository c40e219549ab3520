"""Erasure of one anonymous id, and the retention job."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from server_helpers import READ_KEY, Running, StartServer, make_batch, make_event

from agent_telemetry_server import retention
from agent_telemetry_server.app import retention_job
from agent_telemetry_server.state import SCHEDULER


async def test_erasure_removes_rows_and_rollup_contribution(
    server: Running, db: asyncpg.Connection
) -> None:
    gone, kept = str(uuid.uuid4()), str(uuid.uuid4())
    await server.post_batch(
        make_batch([make_event() for _ in range(3)], gone), idempotency_key="b1"
    )
    await server.post_batch(make_batch([make_event() for _ in range(2)], kept))
    _, before = await server.get("/api/v1/telemetry/stats")
    assert (before["events"], before["unique_anonymous_ids"]) == (5, 2)

    status, body = await server.delete_user(gone)
    assert status == 200
    assert body == {
        "anonymous_id": gone,
        "events_deleted": 3,
        "rollup_rows_deleted": 1,
        "idempotency_keys_deleted": 1,
    }
    for table in ("events", "rollup_daily", "idempotency_keys"):
        count = await db.fetchval(
            f"SELECT count(*) FROM {table} WHERE anonymous_id = $1", uuid.UUID(gone)
        )
        assert count == 0, table
    _, after = await server.get("/api/v1/telemetry/stats")
    assert (after["events"], after["unique_anonymous_ids"]) == (2, 1)
    _, agents = await server.get("/api/v1/analytics/agents")
    assert agents["agents"][0]["unique_anonymous_ids"] == 1

    # Idempotent: asking again deletes nothing and still answers 200.
    status, body = await server.delete_user(gone)
    assert status == 200
    assert (body["events_deleted"], body["rollup_rows_deleted"]) == (0, 0)


async def test_erasure_needs_an_ingest_key_and_a_uuid(server: Running) -> None:
    status, _ = await server.delete_user(str(uuid.uuid4()), key=READ_KEY)
    assert status == 401
    status, _body = await server.delete_user("not-a-uuid")
    assert status == 400


async def test_retention_removes_old_rows_and_keeps_new_ones(
    start_server: StartServer, db: asyncpg.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Tiny delete slices, so the loop over slices is exercised too.
    monkeypatch.setattr(retention, "_SLICE", 2)
    server = await start_server(retention_days=30)
    now = datetime.now(UTC)
    old = [make_event(timestamp=now - timedelta(days=d)) for d in (31, 31, 45, 200, 201)]
    new = [make_event(timestamp=now - timedelta(days=d)) for d in (0, 1, 29)]
    anonymous_id = str(uuid.uuid4())
    _status, body, _ = await server.post_batch(
        make_batch(old + new, anonymous_id), idempotency_key="r"
    )
    assert body["accepted"] == 8
    await db.execute("UPDATE idempotency_keys SET created_at = now() - interval '3 days'")

    # The job the scheduler runs, run now rather than waiting for its interval.
    job = server.app[SCHEDULER].get_job("retention")
    assert job is not None and job.trigger.interval == timedelta(hours=1)
    await retention_job(server.app)

    kept = {str(r["uuid"]) for r in await db.fetch("SELECT uuid FROM events")}
    assert kept == {e["uuid"] for e in new}
    oldest_day = await db.fetchval("SELECT min(day) FROM rollup_daily")
    assert oldest_day >= (now - timedelta(days=30)).date()
    assert await db.fetchval("SELECT sum(events) FROM rollup_daily") == 3
    assert await db.fetchval("SELECT count(*) FROM idempotency_keys") == 0
