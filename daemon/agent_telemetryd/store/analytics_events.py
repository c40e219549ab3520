"""The events explorer's pages and the OTLP metric cells the metrics view turns into series.

The explorer reads the events table newest first (by id, the order they arrived) under the
filters, a page at a time: the rowid walk stops as soon as a page is full, so the newest
page of a recent range costs the same at any buffer size. Metric cells come from
`agent_metric_hours` plus the unfolded tail, or for minute buckets from the events.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from agent_telemetryd.store.analytics_facts import event_tool_sql
from agent_telemetryd.store.analytics_sql import (
    MINUTE_MS,
    TAIL,
    AnalyticsFilter,
    facts_from,
    time_key,
)
from agent_telemetryd.store.dashboard_sql import HOUR_MS, error_sql
from agent_telemetryd.store.metric_cells import CELL_COLUMNS, cells_sql, falls_sql

EXPLORE_COLUMNS = (
    "id",
    "uuid",
    "event",
    "agent",
    "ts_ms",
    "received_ms",
    "properties",
    "error",
    "trace_id",
    "span_id",
    "parent_span_id",
)


def explore_page(
    conn: sqlite3.Connection, f: AnalyticsFilter, limit: int, before: int | None
) -> list[tuple[Any, ...]]:
    """Up to `limit` + 1 events (EXPLORE_COLUMNS) under the filters, newest first, with
    ids below `before`. Times are receipt times, whole hours, as everywhere on the page."""
    terms: list[str] = []
    params: dict[str, Any] = {"n": limit + 1}
    # `+`: walk the rowid backwards and test the time, never sort a range of the index.
    if f.first_hour is not None:
        terms.append("+e.received_ms >= :first_ms")
        params["first_ms"] = f.first_hour * HOUR_MS
    if f.end_hour is not None:
        terms.append("+e.received_ms < :end_ms")
        params["end_ms"] = f.end_hour * HOUR_MS
    for column, value in (("agent", f.agent), ("event", f.event)):
        if value is not None:
            terms.append(f"+e.{column} = :{column}")
            params[column] = value
    if f.model is not None:
        terms.append(
            "(json_extract(e.properties, '$.\"gen_ai.request.model\"') = :model"
            " OR json_extract(e.properties, '$.\"gen_ai.response.model\"') = :model)"
        )
        params["model"] = f.model
    if f.tool is not None:
        terms.append(f"{event_tool_sql('e')} = :tool")
        params["tool"] = f.tool
    if before is not None:
        terms.append("e.id < :before")
        params["before"] = before
    where = " AND ".join(terms) or "1"
    return conn.execute(
        "SELECT e.id, e.uuid, e.event, e.agent, e.ts_ms, e.received_ms, e.properties,"
        f" {error_sql('e')}, e.trace_id, e.span_id, e.parent_span_id FROM events AS e"
        f" WHERE {where} ORDER BY e.id DESC LIMIT :n",
        params,
    ).fetchall()


# (name, agent, attributes, unit, type, temporality, t, points, total, total_count,
#  last_ms, last_value, last_count, last_start, falls, chains, grown, grown_count: see
#  store.metric_cells)
MetricCell = tuple[Any, ...]
_METRIC_PROPERTIES = (
    "json_extract(x.properties, '$.\"metric.unit\"') AS unit,"
    " json_extract(x.properties, '$.\"metric.type\"') AS type,"
    " json_extract(x.properties, '$.\"metric.temporality\"') AS temporality"
)
_HOUR_COLUMNS = ", ".join(f"h.{column}" for column in CELL_COLUMNS)


def metric_cells(conn: sqlite3.Connection, f: AnalyticsFilter) -> list[MetricCell]:
    """The points of the filtered metrics summed per series and time bucket (the metric's
    name is the event filter). Rollup and tail cells of one series and bucket are both
    listed; the caller merges them."""
    if f.bucket == "minute":
        facts, params = facts_from(f, tail=False)
        return _raw_cells(conn, facts, params, f"f.received_ms / {MINUTE_MS}")
    rollup, params = _metric_where(f)
    cells = conn.execute(
        f"SELECT s.name, s.agent, s.attributes, s.unit, s.type, s.temporality,"
        f" {time_key(f, 'h.hour')}, {_HOUR_COLUMNS} FROM agent_metric_hours AS h"
        f" JOIN agent_metric_series AS s ON s.id = h.series WHERE {rollup}",
        params,
    ).fetchall()
    facts, params = facts_from(f, tail=True)
    return cells + _raw_cells(conn, facts, params, time_key(f, f"(f.received_ms / {HOUR_MS})"))


def _metric_where(f: AnalyticsFilter) -> tuple[str, dict[str, Any]]:
    terms = ["h.hour >= :first_hour"] if f.first_hour is not None else []
    params: dict[str, Any] = {"first_hour": f.first_hour, "end_hour": f.end_hour}
    if f.end_hour is not None:
        terms.append("h.hour < :end_hour")
    for column, value in (("s.agent", f.agent), ("s.name", f.event)):
        if value is not None:
            terms.append(f"{column} = :{column[2:]}")
            params[column[2:]] = value
    return " AND ".join(terms) or "1", params


def _raw_cells(
    conn: sqlite3.Connection, facts: str, params: dict[str, Any], key: str
) -> list[MetricCell]:
    """Cells computed from the facts subquery `facts`, bucketed by `key` (SQL on `f`)."""
    points = (
        f"SELECT f.event AS name, f.agent AS agent, f.series AS attributes, {_METRIC_PROPERTIES},"
        f" {key} AS t, f.start_ms AS ms, f.id AS id, f.value AS value, f.count AS count,"
        f" json_extract(x.properties, '$.\"metric.start_time\"') AS st, {falls_sql('x')} AS falls"
        f" FROM {facts} AS f JOIN events AS x ON x.id = f.id WHERE f.series IS NOT NULL"
    )
    return conn.execute(
        cells_sql(points, "name, agent, attributes", "unit, type, temporality"), params
    ).fetchall()


# {start time: (last_ms, last value, last count)}: a series' chains, by where they ended.
Chains = dict[Any, tuple[Any, Any, Any]]


def previous_points(
    conn: sqlite3.Connection, f: AnalyticsFilter
) -> dict[tuple[str, str, str], Chains]:
    """For cumulative series: {(name, agent, attributes): chains} of the last points
    before the range, per start time, the bases of its first amounts: from the last
    folded hour before it, and the unfolded points before it (later points win)."""
    if f.first_hour is None:
        return {}
    found: dict[tuple[str, str, str], Chains] = {}
    folded = conn.execute(
        "SELECT s.name, s.agent, s.attributes, h.chains, max(h.hour) FROM agent_metric_hours"
        " AS h JOIN agent_metric_series AS s ON s.id = h.series WHERE h.hour < :first_hour"
        " AND s.temporality = 'cumulative' GROUP BY h.series",
        {"first_hour": f.first_hour},
    ).fetchall()
    for name, agent, attributes, chains, _ in folded:
        ended = found.setdefault((name, agent, attributes), {})
        for start, _, _, _, last_ms, value, count in json.loads(chains or "[]"):
            ended[start] = (last_ms, value, count)
    unfolded = conn.execute(
        "SELECT f.event, f.agent, f.series, json_extract(x.properties, '$.\"metric.start_time\"')"
        " AS st, max(f.start_ms), f.value, f.count"
        f" FROM {TAIL} AS f JOIN events AS x"
        " ON x.id = f.id WHERE f.received_ms < :first_ms AND f.series IS NOT NULL"
        " AND json_extract(x.properties, '$.\"metric.temporality\"') = 'cumulative'"
        " GROUP BY f.event, f.agent, f.series, st",
        {"first_ms": f.first_hour * HOUR_MS},
    ).fetchall()
    for name, agent, attributes, start, last_ms, value, count in unfolded:
        ended = found.setdefault((name, agent, attributes), {})
        if start not in ended or last_ms >= ended[start][0]:
            ended[start] = (last_ms, value, count)
    return found
