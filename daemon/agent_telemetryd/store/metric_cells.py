"""OTLP metric points summed per series and time bucket, in SQL: what `agent_metric_hours`
keeps per hour and what the live tail and minute buckets compute the same way.

A cell holds its points' count, sum (of values, or of a histogram's sums) and count of
observations, its first and last point, and `grown` (`grown_count`): how much a running
total rose from each point to the next inside the cell, a restart counting all of the
new value (a new start time, or a value that went down). A cumulative counter that three
short-lived processes counted within one hour rose by each one's total; its last value
alone would say only the last one's. `analytics.metric_series` chains cells: a bucket
adds what its first point rose from the last point before it, plus its `grown`.

Migration 13 added the first point and `grown` to `agent_metric_hours` and recounted
them from the folded points (`add_growth_columns`).
"""

from __future__ import annotations

import sqlite3

# The columns migration 13 added to agent_metric_hours, with their SQL types.
GROWTH_COLUMNS = (
    ("first_ms", "INTEGER"),
    ("first_value", "REAL"),
    ("first_count", "REAL"),
    ("first_start", "TEXT"),
    ("grown", "REAL NOT NULL DEFAULT 0"),
    ("grown_count", "REAL NOT NULL DEFAULT 0"),
)
# What a cell is, after its key and bucket, in agent_metric_hours' column names.
CELL_COLUMNS = (
    "points",
    "total",
    "total_count",
    "last_ms",
    "last_value",
    "last_count",
    "last_start",
    "first_ms",
    "first_value",
    "first_count",
    "first_start",
    "grown",
    "grown_count",
)


def step_sql(previous: str, previous_start: str, value: str, start: str) -> str:
    """How much a running total rose from one point to the next (`metric_series._added`
    in SQL): nothing without a value, all of it after a restart or with no number before."""
    return (
        f"(CASE WHEN {value} IS NULL THEN 0 WHEN {previous} IS NULL OR {start} IS NOT"
        f" {previous_start} OR {value} < {previous} THEN {value} ELSE {value} - {previous} END)"
    )


def cells_sql(points: str, key: str, extra: str = "") -> str:
    """SELECT `key` (comma-separated columns), `extra` (columns summarised with max(): a
    series' unit, say), t and CELL_COLUMNS, one row per key and t, from `points`: a
    subquery with the key columns, `extra`'s, t, ms (the point's time), id, value, count
    and st (its start time).

    A point's growth is from the point before it of the same start time: two processes
    exporting one series at once interleave their points, and each counts from its own
    earlier point, not from the other's. The first point of a start time in the cell
    counts whole (a process started), but for the cell's very first point, which the
    reader steps from the last point before the cell."""
    chain = f"PARTITION BY {key}, t, st ORDER BY ms, id"
    more = "".join(f", max({column})" for column in extra.split(", ") if column)
    grown = step_sql("pv", "st", "value", "st")
    grown_count = step_sql("pc", "st", "count", "st")
    return (
        f"WITH p AS ({points}), q AS (SELECT p.*, lag(value) OVER c AS pv,"
        " lag(count) OVER c AS pc,"
        f" row_number() OVER (PARTITION BY {key}, t ORDER BY ms, id) AS rn,"
        f" row_number() OVER (PARTITION BY {key}, t ORDER BY ms DESC, id DESC) AS rl"
        f" FROM p WINDOW c AS ({chain}))"
        f" SELECT {key}{more}, t, count(*), coalesce(sum(value), 0), coalesce(sum(count), 0),"
        " max(ms), max(CASE WHEN rl = 1 THEN value END), max(CASE WHEN rl = 1 THEN count END),"
        " max(CASE WHEN rl = 1 THEN st END), min(ms), max(CASE WHEN rn = 1 THEN value END),"
        " max(CASE WHEN rn = 1 THEN count END), max(CASE WHEN rn = 1 THEN st END),"
        f" coalesce(sum(CASE WHEN rn > 1 THEN {grown} END), 0),"
        f" coalesce(sum(CASE WHEN rn > 1 THEN {grown_count} END), 0)"
        f" FROM q GROUP BY {key}, t"
    )


def folded_points_sql(where: str) -> str:
    """The points of agent_facts rows matching `where` (on `f`), as `cells_sql` reads
    them, keyed by series and hour."""
    return (
        "SELECT f.series AS series, f.hour AS t, f.start_ms AS ms, f.id AS id,"
        " f.value AS value, f.count AS count,"
        " json_extract(e.properties, '$.\"metric.start_time\"') AS st"
        f" FROM agent_facts AS f JOIN events AS e ON e.id = f.id"
        f" WHERE ({where}) AND f.series IS NOT NULL"
    )


# The points of one series and hour, read to count its cell again (migrations 13 and 14:
# the second makes agent_facts again).
METRIC_FACTS_INDEX = (
    "CREATE INDEX IF NOT EXISTS agent_facts_metric_hours ON agent_facts (series, hour)"
    " WHERE series IS NOT NULL"
)
_CELL_LIST = ", ".join(CELL_COLUMNS)


def count_cells_sql(where: str) -> str:
    """The INSERT that counts again, from all their folded points, the cells of
    agent_metric_hours that the agent_facts rows matching `where` (on `t`) fall in. A
    cell is counted whole, not merged with what an earlier fold made of it: its points
    may come in several folds, and the growth between them depends on all of them."""
    touched = (
        "(f.series, f.hour) IN (SELECT t.series, t.hour FROM agent_facts AS t"
        f" WHERE ({where}) AND t.series IS NOT NULL)"
    )
    replaced = ", ".join(f"{column} = excluded.{column}" for column in CELL_COLUMNS)
    return (
        f"INSERT INTO agent_metric_hours (series, hour, {_CELL_LIST})"
        f" SELECT * FROM ({cells_sql(folded_points_sql(touched), 'series')}) WHERE 1"
        f" ON CONFLICT (series, hour) DO UPDATE SET {replaced}"
    )


def add_growth_columns(conn: sqlite3.Connection) -> None:
    """Migration 13: the first point and growth of each hour's cell, recounted from the
    folded points (their facts and events are all there), so hours folded before count
    the restarts in them too. A buffer that has the columns already (its version set back
    by hand) is recounted all the same."""
    present = {row[1] for row in conn.execute("PRAGMA table_info(agent_metric_hours)")}
    for column, kind in GROWTH_COLUMNS:
        if column not in present:
            conn.execute(f"ALTER TABLE agent_metric_hours ADD COLUMN {column} {kind}")
    conn.execute(METRIC_FACTS_INDEX)
    conn.execute("DELETE FROM agent_metric_hours")
    conn.execute(count_cells_sql("1"))
