"""What each /dashboard/api/<name> endpoint answers, as plain functions of a connection.

The daemon runs them on its reader thread; `agent-telemetry report` and the benchmark
call them on a read-only connection of their own. Each reads in one transaction.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Any

from agent_telemetryd.analytics.prices import PriceBook, price_book
from agent_telemetryd.dashboard import agent_views, aggregates
from agent_telemetryd.dashboard.filters import Filters
from agent_telemetryd.store.analytics_facts import stand_ins_for_rollups
from agent_telemetryd.store.dashboard_sql import coarse_bucket_sql, fits_minutes, span
from agent_telemetryd.store.migrations import migrate

View = Callable[[sqlite3.Connection, Filters], Any]

# The parts of `status --json` the page shows: consent, where events went, drops.
HEALTH_KEYS = (
    "running",
    "mode",
    "mode_source",
    "mode_reason",
    "mode_since",
    "sender",
    "buffer",
    "counters",
    "last_upload",
    "next_upload",
    "rate_limit",
)


def health(status: dict[str, Any]) -> dict[str, Any]:
    return {key: status.get(key) for key in HEALTH_KEYS}


def _snapshot(view: View) -> View:
    def run(conn: sqlite3.Connection, f: Filters) -> Any:
        conn.execute("BEGIN")
        try:
            when = span(conn)
            minutes = fits_minutes(conn, f)
            return view(conn, f.resolved(when["first_ms"], when["last_ms"], minutes=minutes))
        finally:
            conn.execute("COMMIT")

    return run


def summary(conn: sqlite3.Connection, f: Filters) -> dict[str, Any]:
    return {
        "filters": f.as_dict(),
        "span": span(conn),
        "totals": aggregates.totals(conn, f),
        "choices": aggregates.choices(conn, f),
    }


def timeseries(conn: sqlite3.Connection, f: Filters) -> dict[str, Any]:
    return {"filters": f.as_dict(), "over_time": aggregates.over_time(conn, f)}


def everything(
    conn: sqlite3.Connection, f: Filters, prices: PriceBook | None = None
) -> dict[str, Any]:
    """Every view the page opens with, the agent analytics' first pages included, read in
    one transaction so they agree with each other."""
    conn.execute("BEGIN")
    try:
        data = aggregates.collect_within(conn, f)
        data.update(agent_views.first_load(conn, f, prices or price_book()))
        return data
    finally:
        conn.execute("COMMIT")


ENDPOINTS: dict[str, View] = {
    # First and last receipt time (two index probes): where the page opens.
    "span": lambda conn, f: {"span": span(conn)},
    "summary": _snapshot(summary),
    "timeseries": _snapshot(timeseries),
    "agents": _snapshot(aggregates.by_agent),
    "events": _snapshot(aggregates.by_event),
    "durations": _snapshot(aggregates.durations),
    "uploads": _snapshot(lambda conn, f: aggregates.uploads(conn)),
    "all": everything,
}
# The agent analytics' views take paging and the prices in force too (`AgentQuery`).
AGENT_ENDPOINTS = agent_views.ENDPOINTS
NAMES = (*ENDPOINTS, *AGENT_ENDPOINTS, "run/<trace_id>")
# These also carry the consent state and counters from `status`.
WITH_HEALTH = frozenset({"summary", "uploads", "all"})


def empty_buffer() -> sqlite3.Connection:
    """An in-memory buffer with the current schema: the answer when there is no file
    (mode off, or nothing stored yet) has the same shape as any other."""
    conn = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
    migrate(conn)
    return conn


def without_rollups(conn: sqlite3.Connection) -> None:
    """A buffer from before migration 3, 4 or 9, opened read-only (the daemon has not been
    restarted since the upgrade): TEMP stand-ins make every query read what the file
    has, the events table directly when it has no rollups at all. Slower, but the same
    numbers."""
    stand_ins_for_rollups(conn)
    if not conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'dash_state'").fetchone():
        conn.execute("CREATE TEMP TABLE dash_state (folded_id INTEGER NOT NULL)")
        conn.execute("INSERT INTO temp.dash_state VALUES (0)")
        conn.execute(
            "CREATE TEMP TABLE dash_hourly (hour INTEGER, agent TEXT, event TEXT,"
            " events INTEGER, errors INTEGER)"
        )
        conn.execute(
            "CREATE TEMP TABLE dash_durations (hour INTEGER, agent TEXT, event TEXT,"
            " bucket REAL, n INTEGER)"
        )
    if not conn.execute(
        "SELECT 1 FROM sqlite_master WHERE name = 'dash_duration_hours'"
    ).fetchone():
        # Migration 4's table is dash_durations summed; a view gives the same rows.
        conn.execute(
            "CREATE TEMP VIEW dash_duration_hours (hour, bucket, n) AS"
            f" SELECT hour, {coarse_bucket_sql('bucket')}, sum(n) FROM dash_durations"
            " GROUP BY 1, 2"
        )


def read_view(
    name: str, conn: sqlite3.Connection | None, f: Filters, prices: PriceBook | None = None
) -> dict[str, Any]:
    own = conn is None
    use = empty_buffer() if conn is None else conn
    try:
        if name == "all":
            return everything(use, f, prices)
        return ENDPOINTS[name](use, f)
    finally:
        if own:
            use.close()


def read_agent_view(
    name: str, conn: sqlite3.Connection | None, query: agent_views.AgentQuery
) -> dict[str, Any]:
    """An agent analytics view (`AGENT_ENDPOINTS`); no buffer reads as an empty one."""
    use = empty_buffer() if conn is None else conn
    try:
        return AGENT_ENDPOINTS[name](use, query)
    finally:
        if conn is None:
            use.close()


def read_run(conn: sqlite3.Connection | None, trace_id: str) -> dict[str, Any]:
    use = empty_buffer() if conn is None else conn
    try:
        return agent_views.run(use, trace_id)
    finally:
        if conn is None:
            use.close()


# Spans embedded in a report, over all its runs: a few runs of thousands of spans each
# would otherwise make a file of hundreds of megabytes.
REPORT_SPANS = 20_000


def report_data(
    conn: sqlite3.Connection | None,
    f: Filters,
    status: dict[str, Any],
    now_ms: int,
    prices: PriceBook | None = None,
) -> dict[str, Any]:
    """Everything the report embeds, read from the buffer (`conn`, the caller's; None when
    there is no buffer yet): what the page opens with, the explorer's and the metrics' first
    pages, and the spans of the runs listed (up to REPORT_SPANS in all), so every view works
    with no server."""
    if conn is not None:
        without_rollups(conn)
    data = read_view("all", conn, f, prices)
    query = agent_views.AgentQuery(f, prices or price_book())
    data["explore"] = read_agent_view("explore", conn, query)
    data["metrics"] = read_agent_view("metrics", conn, query)
    data["run_spans"] = {}
    budget = REPORT_SPANS
    for listed in data["runs"]["runs"]:
        spans = read_run(conn, listed["trace_id"])
        budget -= len(spans["spans"])
        if budget < 0:
            break
        data["run_spans"][listed["trace_id"]] = spans
    data["health"] = health(status)
    data["http_url"] = (status.get("paths") or {}).get("http")
    data["generated_ms"] = now_ms
    return data
