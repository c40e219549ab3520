"""Writing one batch: idempotency record, COPY into staging, insert-or-skip, rollup upsert.

All in one transaction, so the client's 200 means every accepted event, its rollup
contribution and the idempotency record are committed together, or none is.

A batch and an erasure of the same anonymous id never overlap: both take that id's
transaction-level advisory lock first. Without it an erasure deletes only what is
committed, and a batch still in flight commits afterwards, bringing the erased id back.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import asyncpg
import orjson

from agent_telemetry_server.validation import COLUMNS, Batch, fingerprint

# Data-modifying CTEs run exactly once even when unread; the final SELECT only counts.
# Only rows actually inserted are rolled up, so a duplicate never inflates a count.
# ORDER BY gives concurrent batches the same lock order, which keeps deadlocks away.
# The telemetry_* functions (migration 0005) read the models/tokens/cost vocabulary.
_INSERT_AND_ROLL_UP = f"""
WITH inserted AS (
    INSERT INTO events ({", ".join(COLUMNS)})
    SELECT {", ".join(COLUMNS)} FROM staging_events ORDER BY uuid
    ON CONFLICT DO NOTHING
    RETURNING ts, event, agent, anonymous_id, is_error, duration_ms, properties
), facts AS (
    SELECT (ts AT TIME ZONE 'UTC')::date AS day, event, coalesce(agent, '') AS agent,
           anonymous_id, is_error,
           telemetry_model(properties) AS model, telemetry_tool(properties) AS tool,
           telemetry_input_tokens(properties) AS input_tokens,
           telemetry_output_tokens(properties) AS output_tokens,
           telemetry_cost_usd(properties) AS cost_usd
    FROM inserted
), rolled AS (
    INSERT INTO rollup_daily AS r (day, event, agent, anonymous_id, events, errors)
    SELECT day, event, agent, anonymous_id, count(*), count(*) FILTER (WHERE is_error)
    FROM facts
    GROUP BY 1, 2, 3, 4
    ORDER BY 1, 2, 3, 4
    ON CONFLICT (day, event, agent, anonymous_id) DO UPDATE
    SET events = r.events + excluded.events, errors = r.errors + excluded.errors
), installs AS (
    INSERT INTO rollup_installs_daily AS r (day, anonymous_id, events, errors)
    SELECT day, anonymous_id, count(*), count(*) FILTER (WHERE is_error)
    FROM facts
    GROUP BY 1, 2
    ORDER BY 1, 2
    ON CONFLICT (day, anonymous_id) DO UPDATE
    SET events = r.events + excluded.events, errors = r.errors + excluded.errors
), models AS (
    INSERT INTO rollup_models_daily AS r (day, model, agent, anonymous_id, calls, errors,
        input_tokens, output_tokens, costed_calls, cost_usd)
    SELECT day, model, agent, anonymous_id, count(*), count(*) FILTER (WHERE is_error),
           coalesce(sum(input_tokens), 0), coalesce(sum(output_tokens), 0),
           count(cost_usd), coalesce(sum(cost_usd), 0)
    FROM facts WHERE model IS NOT NULL
    GROUP BY 1, 2, 3, 4
    ORDER BY 1, 2, 3, 4
    ON CONFLICT (day, model, agent, anonymous_id) DO UPDATE
    SET calls = r.calls + excluded.calls, errors = r.errors + excluded.errors,
        input_tokens = r.input_tokens + excluded.input_tokens,
        output_tokens = r.output_tokens + excluded.output_tokens,
        costed_calls = r.costed_calls + excluded.costed_calls,
        cost_usd = r.cost_usd + excluded.cost_usd
), tools AS (
    INSERT INTO rollup_tools_daily AS r (day, tool, agent, anonymous_id, calls, errors)
    SELECT day, tool, agent, anonymous_id, count(*), count(*) FILTER (WHERE is_error)
    FROM facts WHERE tool IS NOT NULL
    GROUP BY 1, 2, 3, 4
    ORDER BY 1, 2, 3, 4
    ON CONFLICT (day, tool, agent, anonymous_id) DO UPDATE
    SET calls = r.calls + excluded.calls, errors = r.errors + excluded.errors
), durations AS (
    INSERT INTO rollup_durations_daily AS r (day, kind, name, shard, bucket_ms, samples)
    SELECT (i.ts AT TIME ZONE 'UTC')::date, d.kind, d.name, telemetry_shard(i.anonymous_id),
           d.bucket_ms, count(*)
    FROM inserted i
    CROSS JOIN LATERAL telemetry_duration_samples(i.event, i.properties, i.duration_ms) AS d
    GROUP BY 1, 2, 3, 4, 5
    ORDER BY 1, 2, 3, 4, 5
    ON CONFLICT (day, kind, name, shard, bucket_ms) DO UPDATE
    SET samples = r.samples + excluded.samples
)
SELECT count(*) FROM inserted
"""


# The rollups keyed by anonymous id: erasure deletes an installation's rows from each.
ROLLUP_TABLES_BY_ID = (
    "rollup_daily",
    "rollup_installs_daily",
    "rollup_models_daily",
    "rollup_tools_daily",
)
# Every rollup, for retention.
ROLLUP_TABLES = (*ROLLUP_TABLES_BY_ID, "rollup_durations_daily")

# The duration histograms hold every installation together, so an erasure takes out the
# samples of the installation's raw events, bucket by bucket, locking the rows in the
# order ingest does (day, kind, name, shard, bucket) so the two never deadlock.
_SUBTRACT_DURATIONS = """
WITH gone AS (
    SELECT (e.ts AT TIME ZONE 'UTC')::date AS day, d.kind, d.name,
           telemetry_shard(e.anonymous_id) AS shard, d.bucket_ms, count(*) AS samples
    FROM events e
    CROSS JOIN LATERAL telemetry_duration_samples(e.event, e.properties, e.duration_ms) AS d
    WHERE e.anonymous_id = $1
    GROUP BY 1, 2, 3, 4, 5
), locked AS (
    SELECT r.day, r.kind, r.name, r.shard, r.bucket_ms, g.samples
    FROM rollup_durations_daily r
    JOIN gone g USING (day, kind, name, shard, bucket_ms)
    ORDER BY r.day, r.kind, r.name, r.shard, r.bucket_ms
    FOR UPDATE OF r
)
UPDATE rollup_durations_daily r SET samples = r.samples - l.samples
FROM locked l
WHERE (r.day, r.kind, r.name, r.shard, r.bucket_ms)
    = (l.day, l.kind, l.name, l.shard, l.bucket_ms)
"""

# The two-int form of the advisory lock (class, key) lives apart from the one-bigint form
# that migrations use; the class number only marks these locks as "one anonymous id".
_ANONYMOUS_ID_LOCK_CLASS = 0x4154_4944  # "ATID"


async def _lock_anonymous_id(conn: asyncpg.Connection, anonymous_id: uuid.UUID) -> None:
    """Wait for any other batch or erasure of this id; held until this transaction ends.

    Ids whose hashes collide merely wait for each other.
    """
    await conn.execute(
        "SELECT pg_advisory_xact_lock($1, hashtext($2::uuid::text))",
        _ANONYMOUS_ID_LOCK_CLASS,
        anonymous_id,
    )


class IdempotencyConflict(ValueError):
    """The Idempotency-Key was used before for a different batch."""


@dataclass(frozen=True)
class IngestResult:
    body: dict[str, Any]
    replayed: bool


async def _claim_key(conn: asyncpg.Connection, anonymous_id: uuid.UUID, key: str, fp: str) -> bool:
    """Insert the key's row; False when it already exists (a concurrent twin waits here)."""
    claimed = await conn.fetchval(
        "INSERT INTO idempotency_keys (anonymous_id, idempotency_key, fingerprint)"
        " VALUES ($1, $2, $3) ON CONFLICT DO NOTHING RETURNING true",
        anonymous_id,
        key,
        fp,
    )
    return bool(claimed)


async def write_batch(
    conn: asyncpg.Connection, batch: Batch, idempotency_key: str | None
) -> IngestResult:
    fp = fingerprint(batch.records, batch.rejected)
    async with conn.transaction():
        await _lock_anonymous_id(conn, batch.anonymous_id)
        if idempotency_key is not None and not await _claim_key(
            conn, batch.anonymous_id, idempotency_key, fp
        ):
            row = await conn.fetchrow(
                "SELECT fingerprint, response FROM idempotency_keys"
                " WHERE anonymous_id = $1 AND idempotency_key = $2",
                batch.anonymous_id,
                idempotency_key,
            )
            assert row is not None
            if row["fingerprint"] != fp:
                raise IdempotencyConflict("Idempotency-Key was used for a different batch")
            return IngestResult(orjson.loads(row["response"]), replayed=True)
        accepted = 0
        if batch.records:
            await conn.copy_records_to_table(
                "staging_events", records=[r.as_row() for r in batch.records], columns=COLUMNS
            )
            accepted = int(await conn.fetchval(_INSERT_AND_ROLL_UP))
        body = {
            "accepted": accepted,
            "duplicates": len(batch.records) - accepted,
            "rejected": batch.rejected,
        }
        if idempotency_key is not None:
            await conn.execute(
                "UPDATE idempotency_keys SET response = $3"
                " WHERE anonymous_id = $1 AND idempotency_key = $2",
                batch.anonymous_id,
                idempotency_key,
                orjson.dumps(body).decode(),
            )
    return IngestResult(body, replayed=False)


@dataclass(frozen=True)
class Erasure:
    events_deleted: int
    rollup_rows_deleted: int
    idempotency_keys_deleted: int


def _count(status: str) -> int:
    """asyncpg's command tag, e.g. 'DELETE 12' → 12."""
    return int(status.rsplit(" ", 1)[-1])


async def erase(conn: asyncpg.Connection, anonymous_id: uuid.UUID) -> Erasure:
    """Delete one installation's raw rows, rollup rows, duration samples and batch
    records. Idempotent.

    A batch of this id that is in flight finishes first and is deleted too.
    """
    async with conn.transaction():
        await _lock_anonymous_id(conn, anonymous_id)
        # Before the raw events go: they say which samples to take out.
        await conn.execute(_SUBTRACT_DURATIONS, anonymous_id)
        await conn.execute("DELETE FROM rollup_durations_daily WHERE samples <= 0")
        events = await conn.execute("DELETE FROM events WHERE anonymous_id = $1", anonymous_id)
        rollups = 0
        for table in ROLLUP_TABLES_BY_ID:
            status = await conn.execute(
                f"DELETE FROM {table} WHERE anonymous_id = $1", anonymous_id
            )
            rollups += _count(status)
        keys = await conn.execute(
            "DELETE FROM idempotency_keys WHERE anonymous_id = $1", anonymous_id
        )
    return Erasure(_count(events), rollups, _count(keys))
