"""What the dashboard counts, as SQL, and the fold that keeps its rollups current.

An event is an *error* when any of these holds (the first that applies decides):
- its name ends in `.error` or `.failed` (`tool.call.failed`, `llm.error`);
- `properties.error` is present and not `null`, `false`, `0` or `""` (`{"error": "timeout"}`;
  an error count or code of 0 means none);
- `properties.status` is `"error"` or `"failed"`.

A *duration* is `properties.duration_ms` when it is a number >= 0. Durations are kept
as a histogram whose buckets hold the value to 3 significant digits (whole ms below
1 s): percentiles are exact for whole-ms durations under a second, within 0.5% above.
The over-time percentiles in *day* buckets read a coarser per-hour histogram instead
(`dash_duration_hours`: all agents and events, 2 significant digits; whole ms below
100 ms, within 5.5% above), as a month of days would otherwise sort every hourly cell.

Events are folded into the hourly rollups (`dash_hourly`, `dash_durations`, migration
3) in id order by `fold()`, which runs on the buffer's writer thread when the dashboard
is used — never on the ingest path, so group commit pays nothing for the dashboard.
Every query adds the events not yet folded (id > `dash_state.folded_id`) straight from
the events table, so answers are exact whether or not the fold has caught up, and
also from a read-only connection (the report with the daemon down). A delete trigger
takes folded events back out of the rollups. The expressions below are repeated in
that trigger (migration 6); `tests/test_dashboard_aggregates.py` checks both agree, and the
reference server applies the same rule (`agent_telemetry_server.validation.is_error`).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Any, Protocol

HOUR_MS = 3_600_000
MINUTE_MS = 60_000
# One fold step: a few hundred ms of writer time at most, so ingest never waits long.
# 25k since migration 4's triggers and index roughly doubled the cost per folded event.
FOLD_CHUNK = 25_000
Params = dict[str, Any]


class CellFilter(Protocol):
    """What the cells are filtered by (the dashboard's `Filters`): whole UTC hours
    [first_hour, end_hour), an agent, an event name, and the chart's bucket."""

    @property
    def first_hour(self) -> int | None: ...
    @property
    def end_hour(self) -> int | None: ...
    @property
    def agent(self) -> str | None: ...
    @property
    def event(self) -> str | None: ...
    @property
    def bucket(self) -> str: ...


def error_sql(alias: str) -> str:
    """1 when the row `alias` is an error (see the module docstring), else 0."""
    p = f"{alias}.properties"
    return (
        f"(CASE WHEN substr({alias}.event, -6) = '.error'"
        f" OR substr({alias}.event, -7) = '.failed' THEN 1"
        f" WHEN NOT json_valid({p}) THEN 0"
        f" WHEN json_type({p}, '$.error') NOT IN ('null', 'false')"
        f" AND json_extract({p}, '$.error') NOT IN (0, '') THEN 1"
        f" WHEN json_extract({p}, '$.status') IN ('error', 'failed') THEN 1"
        " ELSE 0 END)"
    )


def has_duration_sql(alias: str) -> str:
    p = f"{alias}.properties"
    return (
        f"(json_valid({p}) AND json_type({p}, '$.duration_ms') IN ('integer', 'real')"
        f" AND json_extract({p}, '$.duration_ms') >= 0)"
    )


def bucket_sql(alias: str) -> str:
    """The histogram bucket of a row's duration (only meaningful where it has one)."""
    return bucket_of(f"json_extract({alias}.properties, '$.duration_ms')")


def bucket_of(d: str) -> str:
    """The histogram bucket of the duration `d` (an SQL expression)."""
    return (
        f"(CASE WHEN {d} < 1000 THEN round({d})"
        f" WHEN {d} < 10000 THEN round({d} / 10) * 10"
        f" WHEN {d} < 100000 THEN round({d} / 100) * 100"
        f" WHEN {d} < 1000000 THEN round({d} / 1000) * 1000"
        f" WHEN {d} < 10000000 THEN round({d} / 10000) * 10000"
        f" ELSE round({d} / 100000) * 100000 END)"
    )


def coarse_bucket_sql(bucket: str) -> str:
    """A 3-digit bucket kept to 2 significant digits (whole ms below 100 ms): the
    buckets of `dash_duration_hours` (migration 4), read by the over-time percentiles
    in day buckets. Applied to the bucket, not the value, so the trigger that keeps
    that table equal to `dash_durations` summed needs only the bucket column."""
    b = bucket
    return (
        f"(CASE WHEN {b} < 100 THEN {b}"
        f" WHEN {b} < 1000 THEN round({b} / 10) * 10"
        f" WHEN {b} < 10000 THEN round({b} / 100) * 100"
        f" WHEN {b} < 100000 THEN round({b} / 1000) * 1000"
        f" WHEN {b} < 1000000 THEN round({b} / 10000) * 10000"
        f" WHEN {b} < 10000000 THEN round({b} / 100000) * 100000"
        f" ELSE round({b} / 1000000) * 1000000 END)"
    )


def folded_id(conn: sqlite3.Connection) -> int:
    row = conn.execute("SELECT folded_id FROM dash_state").fetchone()
    return int(row[0]) if row else 0


def unfolded(conn: sqlite3.Connection) -> int:
    """How many events the fold has not reached yet (a rowid range count: cheap)."""
    row = conn.execute(
        "SELECT count(*) FROM events WHERE id > (SELECT folded_id FROM dash_state)"
    ).fetchone()
    return int(row[0])


def fold(conn: sqlite3.Connection, limit: int = FOLD_CHUNK) -> int:
    """Fold up to `limit` more events into the rollups; returns how many were folded.

    Run inside a write transaction (the writer's `run`), so the rollups and the
    watermark move together and a reader sees either both or neither.
    """
    start = folded_id(conn)
    row = conn.execute(
        "SELECT id FROM events WHERE id > ? ORDER BY id LIMIT 1 OFFSET ?", (start, limit - 1)
    ).fetchone()
    end = row[0] if row else conn.execute("SELECT max(id) FROM events").fetchone()[0]
    if end is None or end <= start:
        return 0
    conn.execute(
        "INSERT INTO dash_hourly (hour, agent, event, events, errors)"
        f" SELECT e.received_ms / {HOUR_MS}, e.agent, e.event, count(*), sum({error_sql('e')})"
        " FROM events AS e WHERE e.id > ? AND e.id <= ? GROUP BY 1, 2, 3"
        " ON CONFLICT (hour, agent, event) DO UPDATE"
        " SET events = events + excluded.events, errors = errors + excluded.errors",
        (start, end),
    )
    conn.execute(
        "INSERT INTO dash_durations (hour, agent, event, bucket, n)"
        f" SELECT e.received_ms / {HOUR_MS}, e.agent, e.event, {bucket_sql('e')}, count(*)"
        f" FROM events AS e WHERE e.id > ? AND e.id <= ? AND {has_duration_sql('e')}"
        " GROUP BY 1, 2, 3, 4"
        " ON CONFLICT (hour, agent, event, bucket) DO UPDATE SET n = n + excluded.n",
        (start, end),
    )
    folded = conn.execute(
        "SELECT count(*) FROM events WHERE id > ? AND id <= ?", (start, end)
    ).fetchone()[0]
    conn.execute("UPDATE dash_state SET folded_id = ?", (end,))
    return int(folded)


def fold_all(
    conn: sqlite3.Connection, fold_chunk: Callable[[sqlite3.Connection], int] | None = None
) -> int:
    """Fold everything with `fold_chunk` (these rollups' `fold` unless given), a chunk per
    transaction (benchmarks, tests, offline use)."""
    step = fold_chunk or fold
    total = 0
    while True:
        conn.execute("BEGIN IMMEDIATE")
        try:
            done = step(conn)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        total += done
        if done == 0:
            return total


def span(conn: sqlite3.Connection) -> dict[str, int | None]:
    """First and last receipt time in the whole buffer (two index probes: SQLite only
    reads one end of the index when a statement has a single min() or max())."""
    first, last = conn.execute(
        "SELECT (SELECT min(received_ms) FROM events), (SELECT max(received_ms) FROM events)"
    ).fetchone()
    return {"first_ms": first, "last_ms": last}


def _where(f: CellFilter, *, tail: bool) -> tuple[str, Params]:
    """Filter terms for the rollups (`tail=False`) or the events table (`tail=True`)."""
    terms: list[str] = []
    params: Params = {}
    if tail:
        # `+` keeps SQLite on the rowid range (the tail is small) rather than scanning
        # the received_ms index over the whole time range.
        terms.append("e.id > (SELECT folded_id FROM dash_state)")
        hour = f"(+e.received_ms / {HOUR_MS})"
        prefix = "e."
    else:
        hour, prefix = "hour", ""
    if f.first_hour is not None:
        terms.append(f"{hour} >= :first_hour")
        params["first_hour"] = f.first_hour
    if f.end_hour is not None:
        terms.append(f"{hour} < :end_hour")
        params["end_hour"] = f.end_hour
    if f.agent is not None:
        terms.append(f"{prefix}agent = :agent")
        params["agent"] = f.agent
    if f.event is not None:
        terms.append(f"{prefix}event = :event")
        params["event"] = f.event
    return (" AND ".join(terms) or "1"), params


def counts_cte(f: CellFilter) -> tuple[str, Params]:
    """`cells(hour, agent, event, events, errors)`: the hourly rollup plus the tail."""
    rollup, params = _where(f, tail=False)
    tail, tail_params = _where(f, tail=True)
    params.update(tail_params)
    sql = (
        "WITH cells(hour, agent, event, events, errors) AS ("
        f" SELECT hour, agent, event, events, errors FROM dash_hourly WHERE {rollup}"
        " UNION ALL"
        f" SELECT e.received_ms / {HOUR_MS}, e.agent, e.event, 1, {error_sql('e')}"
        f" FROM events AS e WHERE {tail})"
    )
    return sql, params


def durations_cte(f: CellFilter) -> tuple[str, Params]:
    """`cells(hour, agent, event, bucket, n)`: the duration histogram plus the tail."""
    rollup, params = _where(f, tail=False)
    tail, tail_params = _where(f, tail=True)
    params.update(tail_params)
    sql = (
        "WITH cells(hour, agent, event, bucket, n) AS ("
        f" SELECT hour, agent, event, bucket, n FROM dash_durations WHERE {rollup}"
        " UNION ALL"
        f" SELECT e.received_ms / {HOUR_MS}, e.agent, e.event, {bucket_sql('e')}, 1"
        f" FROM events AS e WHERE {tail} AND {has_duration_sql('e')})"
    )
    return sql, params


def range_where(f: CellFilter, alias: str = "e.") -> tuple[str, Params]:
    """Filter terms on every event of the range (for minute buckets, which the hourly
    rollups cannot give): the same whole hours as the rollups' terms, on the
    received_ms index. `alias` prefixes the columns (`""` for a table of events' facts)."""
    terms: list[str] = []
    params: Params = {}
    if f.first_hour is not None:
        terms.append(f"{alias}received_ms >= :first_ms")
        params["first_ms"] = f.first_hour * HOUR_MS
    if f.end_hour is not None:
        terms.append(f"{alias}received_ms < :end_ms")
        params["end_ms"] = f.end_hour * HOUR_MS
    for column, value in (("agent", f.agent), ("event", f.event)):
        if value is not None:
            terms.append(f"{alias}{column} = :{column}")
            params[column] = value
    return (" AND ".join(terms) or "1"), params


# Minute buckets read every event of the range, one row lookup each (the rollups are
# hourly): a range holding more than this is shown in hours, so that a request stays
# within a couple of hundred milliseconds however busy the last hours were.
MINUTE_EVENTS_MAX = 10_000


def fits_minutes(conn: sqlite3.Connection, f: CellFilter) -> bool:
    """Whether the time range holds few enough events to be read one by one: a count on
    the received_ms index alone (agent and event filters left out, which only makes it
    larger) that stops past the bound."""
    terms: list[str] = []
    params: Params = {}
    if f.first_hour is not None:
        terms.append("received_ms >= :first_ms")
        params["first_ms"] = f.first_hour * HOUR_MS
    if f.end_hour is not None:
        terms.append("received_ms < :end_ms")
        params["end_ms"] = f.end_hour * HOUR_MS
    where = " AND ".join(terms) or "1"
    row = conn.execute(
        f"SELECT count(*) FROM (SELECT 1 FROM events WHERE {where} LIMIT {MINUTE_EVENTS_MAX + 1})",
        params,
    ).fetchone()
    return int(row[0]) <= MINUTE_EVENTS_MAX


def minute_counts_sql(f: CellFilter) -> tuple[str, Params]:
    """(minute, events, errors) per minute of the range, read from the events themselves:
    only asked for ranges of a few hours (`Filters.resolved`)."""
    where, params = range_where(f)
    sql = (
        f"SELECT e.received_ms / {MINUTE_MS} AS k, count(*), sum({error_sql('e')})"
        f" FROM events AS e WHERE {where} GROUP BY k ORDER BY k"
    )
    return sql, params


def over_time_cte(f: CellFilter) -> tuple[str, Params]:
    """The cells the over-time percentiles read: for minute buckets, the range's events
    (their `hour` column holds the minute); exact hourly cells for hour buckets; for day
    buckets, 2-digit buckets, from `dash_duration_hours` (all agents and events, ~4x
    fewer cells) when no agent or event filter needs the finer table."""
    if f.bucket == "minute":
        # Each duration read once per event: MATERIALIZED keeps SQLite from copying the
        # json_extract into every arm of the bucket's CASE.
        where, params = range_where(f)
        p = "e.properties"
        sql = (
            "WITH raw AS MATERIALIZED ("
            f" SELECT e.received_ms / {MINUTE_MS} AS k,"
            f" CASE WHEN json_valid({p}) THEN json_type({p}, '$.duration_ms') END AS kind,"
            f" CASE WHEN json_valid({p}) THEN json_extract({p}, '$.duration_ms') END AS ms"
            f" FROM events AS e WHERE {where}),"
            f" cells(hour, bucket, n) AS (SELECT k, {bucket_of('ms')}, 1 FROM raw"
            " WHERE kind IN ('integer', 'real') AND ms >= 0)"
        )
        return sql, params
    if f.bucket != "day":
        return durations_cte(f)
    rollup, params = _where(f, tail=False)
    tail, tail_params = _where(f, tail=True)
    params.update(tail_params)
    if f.agent is None and f.event is None:
        source = f"SELECT hour, bucket, n FROM dash_duration_hours WHERE {rollup}"
    else:
        source = f"SELECT hour, {coarse_bucket_sql('bucket')}, n FROM dash_durations WHERE {rollup}"
    sql = (
        f"WITH cells(hour, bucket, n) AS ({source}"
        " UNION ALL"
        f" SELECT e.received_ms / {HOUR_MS}, {coarse_bucket_sql(bucket_sql('e'))}, 1"
        f" FROM events AS e WHERE {tail} AND {has_duration_sql('e')})"
    )
    return sql, params


def histogram_sql(table: str, f: CellFilter) -> tuple[tuple[str, Params], tuple[str, Params]]:
    """Two inserts that fill `table (event, bucket, n)` with the filtered durations: the
    rollup grouped on its own, so SQLite walks `dash_durations_by_event` (migration 4) in
    (event, bucket) order instead of sorting every hourly cell, then the (small) tail
    added cell by cell. A UNION ALL of the two would force that sort again."""
    rollup, params = _where(f, tail=False)
    tail, tail_params = _where(f, tail=True)
    from_rollup = (
        f"INSERT INTO {table} (event, bucket, n) SELECT event, bucket, sum(n)"
        f" FROM dash_durations WHERE {rollup} GROUP BY event, bucket"
    )
    from_tail = (
        f"INSERT INTO {table} (event, bucket, n)"
        f" SELECT e.event, {bucket_sql('e')}, 1 FROM events AS e"
        f" WHERE {tail} AND {has_duration_sql('e')}"
        " ON CONFLICT (event, bucket) DO UPDATE SET n = n + excluded.n"
    )
    return (from_rollup, params), (from_tail, tail_params)
