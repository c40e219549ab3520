"""Retention: raw events, rollups and idempotency records older than their window go.

Run by APScheduler (AsyncIOScheduler) in the server process; also callable directly.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg
import structlog

from agent_telemetry_server.ingest import ROLLUP_TABLES_BY_ID

log = structlog.get_logger("agent_telemetry_server.retention")

# Deleting in slices keeps each transaction (and its locks and WAL burst) short.
_SLICE = 20_000


@dataclass(frozen=True)
class RetentionResult:
    events_deleted: int
    rollup_rows_deleted: int
    idempotency_keys_deleted: int
    chunks_dropped: int


def _count(status: str) -> int:
    return int(status.rsplit(" ", 1)[-1])


async def _delete_events(conn: asyncpg.Connection, cutoff: datetime) -> int:
    total = 0
    while True:
        # By key, not ctid: on a hypertable a ctid is only unique within one chunk.
        status = await conn.execute(
            "DELETE FROM events WHERE ts < $1 AND (uuid, ts) IN ("
            "  SELECT uuid, ts FROM events WHERE ts < $1 LIMIT $2)",
            cutoff,
            _SLICE,
        )
        deleted = _count(status)
        total += deleted
        if deleted < _SLICE:
            return total


async def run_retention(
    conn: asyncpg.Connection,
    retention_days: int,
    idempotency_ttl_hours: int = 48,
    now: datetime | None = None,
) -> RetentionResult:
    now = now or datetime.now(UTC)
    cutoff = now - timedelta(days=retention_days)
    storage = await conn.fetchval("SELECT value FROM server_meta WHERE key = 'storage'")
    chunks = 0
    if storage == "timescaledb":
        # Whole chunks older than the cutoff go at the cost of a DROP TABLE each;
        # the DELETE below then trims the one chunk that straddles the cutoff.
        dropped = await conn.fetch(
            "SELECT drop_chunks('events', older_than => $1::timestamptz)", cutoff
        )
        chunks = len(dropped)
    events = await _delete_events(conn, cutoff)
    rollups = 0
    for table in ROLLUP_TABLES_BY_ID:
        rollups += _count(await conn.execute(f"DELETE FROM {table} WHERE day < $1", cutoff.date()))
    # The histograms of the day the cutoff falls in go now too: some of that day's raw
    # events are gone, and an erasure could no longer take out their samples.
    rollups += _count(
        await conn.execute("DELETE FROM rollup_durations_daily WHERE day <= $1", cutoff.date())
    )
    keys = await conn.execute(
        "DELETE FROM idempotency_keys WHERE created_at < $1",
        now - timedelta(hours=idempotency_ttl_hours),
    )
    result = RetentionResult(events, rollups, _count(keys), chunks)
    log.info(
        "retention ran",
        retention_days=retention_days,
        events_deleted=result.events_deleted,
        rollup_rows_deleted=result.rollup_rows_deleted,
        idempotency_keys_deleted=result.idempotency_keys_deleted,
        chunks_dropped=chunks,
    )
    return result
