"""OTLP metric points summed per series and time bucket, in SQL: what `agent_metric_hours`
keeps per hour and what the live tail and minute buckets compute the same way.

A cell holds its points' count, sum (of values, or of a histogram's sums) and count of
observations, its last point, and for a running total (a cumulative series) what it
needs to say how much was added in it, whatever processes counted it:

- `chains`: per start time (a process counting from zero, as OTLP marks it) the first and
  last point in the cell, as JSON: `[[start, first_ms, first_value, first_count, last_ms,
  last_value, last_count], …]`;
- `grown` (`grown_count`): how much each chain rose from each of its points to the next
  inside the cell, a value that went down (a reset) counting whole.

A cumulative counter that three short-lived processes counted within one hour, one after
another or at once, rose by each one's total; its last value alone would say only the
last one's, and stepping each point from whichever point came before would take every
switch between two processes for a restart. `analytics.metric_series` chains cells: a
bucket adds `grown` and what each chain's first point rose from that chain's last point
before the bucket (all of it for a chain new there).

Migration 13 added these columns to `agent_metric_hours` (`add_growth_columns`);
migration 14 has every event folded again, which counts them for the hours folded before.
"""

from __future__ import annotations

import sqlite3

# The columns migration 13 added to agent_metric_hours, with their SQL types.
GROWTH_COLUMNS = (
    ("falls", "INTEGER NOT NULL DEFAULT 0"),
    ("chains", "TEXT"),
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
    "falls",
    "chains",
    "grown",
    "grown_count",
)


def step_sql(previous: str, value: str) -> str:
    """How much a running total rose from one point to the next of the same start time
    (`metric_series._step` in SQL): nothing without a value, all of it with no number
    before or after a reset (a value that went down, but for a series that may: `falls`)."""
    return (
        f"(CASE WHEN {value} IS NULL THEN 0 WHEN {previous} IS NULL"
        f" OR ({value} < {previous} AND NOT falls) THEN {value} ELSE {value} - {previous} END)"
    )


def cells_sql(points: str, key: str, extra: str = "") -> str:
    """SELECT `key` (comma-separated columns), `extra` (columns summarised with max(): a
    series' unit, say), t and CELL_COLUMNS, one row per key and t, from `points`: a
    subquery with the key columns, `extra`'s, t, ms (the point's time), id, value, count,
    st (its start time) and falls (1 for a sum that is not monotonic: an up-down counter,
    whose going down is a change, not a reset)."""
    extras = [column for column in extra.split(", ") if column]
    inner = "".join(f", max({column}) AS {column}" for column in extras)
    outer = "".join(f", max({column})" for column in extras)
    cell = f"{key}, t"
    return (
        f"WITH p AS ({points}), q AS (SELECT p.*, lag(value) OVER c AS pv,"
        " lag(count) OVER c AS pc, row_number() OVER c AS cn,"
        f" row_number() OVER (PARTITION BY {cell}, st ORDER BY ms DESC, id DESC) AS cl,"
        f" row_number() OVER (PARTITION BY {cell} ORDER BY ms DESC, id DESC) AS rl"
        f" FROM p WINDOW c AS (PARTITION BY {cell}, st ORDER BY ms, id)),"
        # One row per chain (start time) of each cell.
        f" ch AS (SELECT {cell}, st{inner}, count(*) AS n, coalesce(sum(value), 0) AS sv,"
        " coalesce(sum(count), 0) AS sc, min(ms) AS fms, max(ms) AS lms,"
        " max(CASE WHEN cn = 1 THEN value END) AS fv, max(CASE WHEN cn = 1 THEN count END) AS fc,"
        " max(CASE WHEN cl = 1 THEN value END) AS lv, max(CASE WHEN cl = 1 THEN count END) AS lc,"
        f" coalesce(sum(CASE WHEN cn > 1 THEN {step_sql('pv', 'value')} END), 0) AS g,"
        f" coalesce(sum(CASE WHEN cn > 1 THEN {step_sql('pc', 'count')} END), 0) AS gc,"
        f" max(rl = 1) AS has_last, max(falls) AS falls FROM q GROUP BY {cell}, st)"
        f" SELECT {key}{outer}, t, sum(n), sum(sv), sum(sc), max(lms),"
        " max(CASE WHEN has_last THEN lv END), max(CASE WHEN has_last THEN lc END),"
        " max(CASE WHEN has_last THEN st END), max(falls),"
        " json_group_array(json_array(st, fms, fv, fc, lms, lv, lc)), sum(g), sum(gc)"
        f" FROM ch GROUP BY {cell}"
    )


def folded_points_sql(where: str) -> str:
    """The points of agent_facts rows matching `where` (on `f`), as `cells_sql` reads
    them, keyed by series and hour."""
    return (
        "SELECT f.series AS series, f.hour AS t, f.start_ms AS ms, f.id AS id,"
        " f.value AS value, f.count AS count,"
        " json_extract(e.properties, '$.\"metric.start_time\"') AS st,"
        f" {falls_sql('e')} AS falls FROM agent_facts AS f JOIN events AS e ON e.id = f.id"
        f" WHERE ({where}) AND f.series IS NOT NULL"
    )


def falls_sql(event: str) -> str:
    """1 when the point of `event` is of a sum that is not monotonic, else 0."""
    return f"coalesce(json_extract({event}.properties, '$.\"metric.monotonic\"') = 0, 0)"


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
    """Migration 13: the columns, and the index that finds an hour's points. Cells folded
    before keep their last point only (read as one chain) until migration 14 has every
    event folded again. A buffer that has the columns already (its version set back by
    hand) keeps them."""
    present = {row[1] for row in conn.execute("PRAGMA table_info(agent_metric_hours)")}
    for column, kind in GROWTH_COLUMNS:
        if column not in present:
            conn.execute(f"ALTER TABLE agent_metric_hours ADD COLUMN {column} {kind}")
    conn.execute(METRIC_FACTS_INDEX)
