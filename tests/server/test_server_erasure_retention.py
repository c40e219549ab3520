"""Erasure of one anonymous id, and the retention job."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
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
        "rollup_rows_deleted": 2,  # its rollup_daily row and its installation-day row
        "idempotency_keys_deleted": 1,
    }
    for table in ("events", "rollup_daily", "rollup_installs_daily", "idempotency_keys"):
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


async def _lock_waits(db: asyncpg.Connection) -> int:
    """How many sessions on this database are waiting for a lock right now."""
    return int(
        await db.fetchval(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
    )


async def _until(condition: Callable[[], Awaitable[bool]]) -> None:
    """Poll `condition` (it asks PostgreSQL, which cannot notify us) for up to 5 s."""
    for _ in range(500):
        if await condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("timed out")


async def test_erasure_also_removes_a_batch_of_that_id_still_in_flight(
    server: Running, db: asyncpg.Connection, database_url: str
) -> None:
    anonymous_id = uuid.uuid4()
    blocker = await asyncpg.connect(database_url)
    try:
        held = blocker.transaction()
        await held.start()
        # An uncommitted claim of the batch's Idempotency-Key: the batch's own claim waits
        # for it inside the batch's transaction, so the batch is held mid-flight.
        await blocker.execute(
            "INSERT INTO idempotency_keys (anonymous_id, idempotency_key, fingerprint)"
            " VALUES ($1, 'in-flight', 'x')",
            anonymous_id,
        )
        batch = asyncio.create_task(
            server.post_batch(
                make_batch([make_event(), make_event()], str(anonymous_id)),
                idempotency_key="in-flight",
            )
        )

        async def batch_waiting() -> bool:
            return await _lock_waits(db) == 1

        await _until(batch_waiting)
        erasure = asyncio.create_task(server.delete_user(str(anonymous_id)))

        async def erasure_done_or_queued() -> bool:
            # Queued behind the batch; an erasure that does not wait has already answered.
            return erasure.done() or await _lock_waits(db) == 2

        await _until(erasure_done_or_queued)
        await held.rollback()
        status, body, _ = await batch
        erasure_status, erased = await erasure
    finally:
        await blocker.close()
    assert (status, body["accepted"]) == (200, 2)
    assert erasure_status == 200
    assert erased == {
        "anonymous_id": str(anonymous_id),
        "events_deleted": 2,
        "rollup_rows_deleted": 2,  # its rollup_daily row and its installation-day row
        "idempotency_keys_deleted": 1,
    }
    for table in ("events", "rollup_daily", "rollup_installs_daily", "idempotency_keys"):
        count = await db.fetchval(
            f"SELECT count(*) FROM {table} WHERE anonymous_id = $1", anonymous_id
        )
        assert count == 0, table


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
    # Events already outside the window are refused at ingest, so the old ones are written
    # through a second server on the same database, with a year's window.
    writer = await start_server(retention_days=365)
    now = datetime.now(UTC)
    old = [make_event(timestamp=now - timedelta(days=d)) for d in (31, 31, 45, 200, 201)]
    new = [make_event(timestamp=now - timedelta(days=d)) for d in (0, 1, 29)]
    anonymous_id = str(uuid.uuid4())
    _status, body, _ = await writer.post_batch(
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
