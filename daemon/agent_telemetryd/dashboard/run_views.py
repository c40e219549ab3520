"""A run's waterfall, the events explorer and the OTLP metric series: the views that read
single events (or series of points) rather than rollups. Called inside a snapshot."""

from __future__ import annotations

import sqlite3
from typing import Any

import orjson

from agent_telemetry._wire import format_timestamp
from agent_telemetryd.analytics.metric_series import series
from agent_telemetryd.dashboard.filters import Filters
from agent_telemetryd.store.analytics_events import (
    EXPLORE_COLUMNS,
    explore_page,
    metric_cells,
    previous_points,
)
from agent_telemetryd.store.analytics_runs import MAX_SPANS, run_events
from agent_telemetryd.store.analytics_sql import bucket_start_ms

# Where an error's kind and its words are found, first that is there wins.
ERROR_TYPE_KEYS = ("error.type", "exception.type", "error_type")
ERROR_MESSAGE_KEYS = ("exception.message", "status.message", "error.message", "error_message")


def _properties(text: str) -> dict[str, Any]:
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def _error_details(properties: dict[str, Any]) -> tuple[str | None, str | None]:
    """The error's type and message as the event states them, else None."""
    error = properties.get("error")
    kind = next(
        (properties[k] for k in ERROR_TYPE_KEYS if isinstance(properties.get(k), str)), None
    )
    message = next(
        (properties[k] for k in ERROR_MESSAGE_KEYS if isinstance(properties.get(k), str)), None
    )
    if isinstance(error, str) and error:
        if kind is None:
            kind = error
        elif message is None:
            message = error
    return kind, message


def _duration(properties: dict[str, Any]) -> float | None:
    value = properties.get("duration_ms")
    if type(value) in (int, float) and value >= 0:
        return value
    return None


def run_spans(conn: sqlite3.Connection, trace_id: str) -> dict[str, Any]:
    """The trace's events as a waterfall: each span followed by its children (by start),
    depth-first. An event that is not a span (a log record in a span, an event tracked in
    one) sits under its span. A span whose parent is not here (the root has not arrived,
    or was deleted) starts a tree of its own."""
    rows = run_events(conn, trace_id)
    truncated = len(rows) > MAX_SPANS
    items = []
    for event_id, name, agent, ts_ms, text, span_id, parent, error in rows[:MAX_SPANS]:
        properties = _properties(text)
        duration = _duration(properties)
        is_span = span_id is not None and duration is not None
        error_type, error_message = _error_details(properties) if error else (None, None)
        items.append(
            {
                "id": event_id,
                "span_id": span_id if is_span else None,
                "parent_span_id": parent if is_span else (parent or span_id),
                "name": name,
                "agent": agent,
                "start_ms": ts_ms,
                "duration_ms": duration if is_span else None,
                "status": properties.get("status")
                if isinstance(properties.get("status"), str)
                else None,
                "error": bool(error),
                "error_type": error_type,
                "error_message": error_message,
                "properties": properties,
            }
        )
    return {"trace_id": trace_id, "spans": waterfall(items), "truncated": truncated}


def waterfall(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """`items` (in start order) depth-first with a `depth` each: children after their
    parent, siblings by start time."""
    by_span = {item["span_id"]: item for item in items if item["span_id"] is not None}
    children: dict[str | None, list[dict[str, Any]]] = {}
    for item in items:
        parent = item["parent_span_id"]
        key = parent if parent in by_span and parent != item["span_id"] else None
        children.setdefault(key, []).append(item)
    ordered: list[dict[str, Any]] = []
    seen: set[int] = set()
    stack = [(item, 0) for item in reversed(children.get(None, []))]
    while stack:
        item, depth = stack.pop()
        if item["id"] in seen:
            continue
        seen.add(item["id"])
        ordered.append({**item, "depth": depth})
        if item["span_id"] is not None:
            kids = children.get(item["span_id"], [])
            stack.extend((kid, depth + 1) for kid in reversed(kids))
    # A cycle of parents (bad ids) has no root: list what it left out, at the top level.
    ordered.extend({**item, "depth": 0} for item in items if item["id"] not in seen)
    return ordered


def explore(conn: sqlite3.Connection, f: Filters, limit: int, before: str | None) -> dict[str, Any]:
    if before is not None and not before.isdigit():
        raise ValueError("before must be the `next` cursor of a previous explore page")
    rows = explore_page(conn, f, limit, int(before) if before is not None else None)
    events = []
    for row in rows[:limit]:
        found = dict(zip(EXPLORE_COLUMNS, row, strict=True))
        properties = _properties(found["properties"])
        error_type, error_message = _error_details(properties) if found["error"] else (None, None)
        events.append(
            {
                "id": found["id"],
                "uuid": found["uuid"],
                "event": found["event"],
                "agent": found["agent"],
                "timestamp": format_timestamp(found["ts_ms"]),
                "received_at": format_timestamp(found["received_ms"]),
                "properties": properties,
                "error": bool(found["error"]),
                "error_type": error_type,
                "error_message": error_message,
                "trace_id": found["trace_id"],
                "span_id": found["span_id"],
                "parent_span_id": found["parent_span_id"],
            }
        )
    more = len(rows) > limit
    return {
        "filters": f.as_dict(),
        "events": events,
        "next": str(events[-1]["id"]) if more and events else None,
    }


def metrics(conn: sqlite3.Connection, f: Filters) -> dict[str, Any]:
    found = series(metric_cells(conn, f), previous_points(conn, f), lambda t: bucket_start_ms(f, t))
    return {"filters": f.as_dict(), "bucket": f.bucket, "series": found}
