"""The dashboard's numbers, each one SQL statement over the rollups plus the unfolded tail.

Nothing here loads events into Python: every function returns at most a few hundred
rows (one per time bucket, agent or event name), whatever the buffer holds. Times are
when the daemon received an event (its own clock; an agent's clock may be wrong), in
whole UTC hours; day buckets start at local midnight for the given UTC offset.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from agent_telemetryd.dashboard.filters import Filters
from agent_telemetryd.store.dashboard_sql import (
    HOUR_MS,
    MINUTE_MS,
    Params,
    counts_cte,
    fits_minutes,
    histogram_sql,
    minute_counts_sql,
    over_time_cte,
    span,
)

TOP = 50  # agents / event names listed; the rest are summed into `others`
CHOICES = 500  # names offered in the filter menus


def _time_key(f: Filters) -> str:
    """SQL for the bucket a cell's `hour` falls in (an hour, or a local day; in minute
    buckets the cells that need one already hold the minute there)."""
    if f.bucket == "day":
        return f"((hour * 60 + {int(f.tz_offset_min)}) / 1440)"
    return "hour"


def _bucket_start_ms(f: Filters, key: int) -> int:
    if f.bucket == "day":
        return (key * 1440 - f.tz_offset_min) * MINUTE_MS
    if f.bucket == "minute":
        return key * MINUTE_MS
    return key * HOUR_MS


def _rate(errors: int, events: int) -> float | None:
    return round(errors / events, 6) if events else None


def totals(conn: sqlite3.Connection, f: Filters) -> dict[str, Any]:
    return _totals(conn, *counts_cte(f))


def _totals(conn: sqlite3.Connection, cte: str, params: Params) -> dict[str, Any]:
    events, errors = conn.execute(
        f"{cte} SELECT coalesce(sum(events), 0), coalesce(sum(errors), 0) FROM cells", params
    ).fetchone()
    return {"events": events, "errors": errors, "error_rate": _rate(errors, events)}


def over_time(conn: sqlite3.Connection, f: Filters) -> list[dict[str, Any]]:
    """Events and errors per bucket, with empty buckets between the first and last filled."""
    if f.bucket == "minute":
        return _minutes(conn, f)
    return _over_time(conn, f, *counts_cte(f), _time_key(f))


def _minutes(conn: sqlite3.Connection, f: Filters) -> list[dict[str, Any]]:
    """Per minute, from the range's events: the rollups are hourly."""
    return _filled(f, conn.execute(*minute_counts_sql(f)).fetchall())


def _over_time(
    conn: sqlite3.Connection, f: Filters, cte: str, params: Params, key: str
) -> list[dict[str, Any]]:
    rows = conn.execute(
        f"{cte} SELECT {key} AS k, sum(events), sum(errors) FROM cells GROUP BY k ORDER BY k",
        params,
    ).fetchall()
    return _filled(f, rows)


def _filled(f: Filters, rows: list[tuple[int, int, int]]) -> list[dict[str, Any]]:
    if not rows:
        return []
    found = {k: (events, errors) for k, events, errors in rows}
    series = []
    for key in range(rows[0][0], rows[-1][0] + 1):
        events, errors = found.get(key, (0, 0))
        series.append(
            {
                "t_ms": _bucket_start_ms(f, key),
                "events": events,
                "errors": errors,
                "error_rate": _rate(errors, events),
            }
        )
    return series


def _breakdown(conn: sqlite3.Connection, cte: str, params: Params, column: str) -> dict[str, Any]:
    rows = conn.execute(
        f"{cte} SELECT {column}, sum(events) AS n, sum(errors) FROM cells"
        f" GROUP BY {column} ORDER BY n DESC, {column}",
        params,
    ).fetchall()
    top = [
        {"name": name, "events": events, "errors": errors, "error_rate": _rate(errors, events)}
        for name, events, errors in rows[:TOP]
    ]
    rest = rows[TOP:]
    others = {
        "names": len(rest),
        "events": sum(r[1] for r in rest),
        "errors": sum(r[2] for r in rest),
    }
    return {"rows": top, "others": others}


def by_agent(conn: sqlite3.Connection, f: Filters) -> dict[str, Any]:
    return _breakdown(conn, *counts_cte(f), "agent")


def by_event(conn: sqlite3.Connection, f: Filters) -> dict[str, Any]:
    return _breakdown(conn, *counts_cte(f), "event")


def choices(conn: sqlite3.Connection, f: Filters) -> dict[str, list[str]]:
    """Agents and event names seen in the time range, for the filter menus."""
    return _choices(conn, *counts_cte(Filters(since_ms=f.since_ms, until_ms=f.until_ms)))


def _choices(conn: sqlite3.Connection, cte: str, params: Params) -> dict[str, list[str]]:
    found = {}
    for column in ("agent", "event"):
        found[column + "s"] = [
            row[0]
            for row in conn.execute(
                f"{cte} SELECT DISTINCT {column} FROM cells ORDER BY 1 LIMIT {CHOICES}", params
            )
        ]
    return found


# Per-request scratch tables: a CTE's rows, grouped once and read several times. TEMP
# tables live in the connection's own (in-memory: `temp_store=MEMORY`) schema, so this
# works on the report's read-only connection too, and no other connection sees them.
_HISTOGRAM = "temp.dash_request_histogram"
_COUNTS = "temp.dash_request_counts"


def _materialise_counts(conn: sqlite3.Connection, f: Filters) -> tuple[str, Params]:
    """Evaluate `counts_cte` once into `_COUNTS`, grouped by (time key, agent, event),
    and return a `cells` CTE over it for `_totals`, `_breakdown` and `_choices`.

    `collect()` used to re-scan the hourly rollup and the tail for each of those views;
    their keys are all coarsenings of (time key, agent, event). The CTE's `hour` column
    holds the time key, so the over-time query must group by `hour` itself, not by
    `_time_key(f)` again.
    """
    cte, params = counts_cte(f)
    conn.execute(f"DROP TABLE IF EXISTS {_COUNTS}")
    conn.execute(
        f"CREATE TABLE {_COUNTS} AS {cte}"
        f" SELECT {_time_key(f)} AS t, agent, event, sum(events) AS events,"
        " sum(errors) AS errors FROM cells GROUP BY t, agent, event",
        params,
    )
    shared = (
        "WITH cells(hour, agent, event, events, errors) AS ("
        f" SELECT t, agent, event, events, errors FROM {_COUNTS})"
    )
    return shared, {}


def _materialise_histogram(conn: sqlite3.Connection, f: Filters) -> None:
    """The filtered durations as (event, bucket, n) in `_HISTOGRAM`, keyed in that order.

    Both the per-event and the overall percentiles read it: the overall histogram is
    the per-event one summed over events (a few thousand rows). Filled without sorting
    every hourly cell (~400k at 1M events, a third of a second): see `histogram_sql`.
    """
    conn.execute(f"DROP TABLE IF EXISTS {_HISTOGRAM}")
    conn.execute(
        f"CREATE TABLE {_HISTOGRAM} (event TEXT NOT NULL, bucket REAL NOT NULL,"
        " n INTEGER NOT NULL, PRIMARY KEY (event, bucket)) WITHOUT ROWID"
    )
    for sql, params in histogram_sql(_HISTOGRAM, f):
        conn.execute(sql, params)


def _percentiles(
    conn: sqlite3.Connection,
    cells: str,
    params: Params,
    key: str,
    order: str,
    limit: int | None = None,
) -> list[tuple[Any, int, float, float, float]]:
    """(key, count, p50, p95, max) per key over the `cells` CTE (columns including
    `bucket` and `n`): nearest rank over the histogram buckets, i.e. the smallest value
    with at least p% of the durations at or below it."""
    sql = (
        f"{cells}, d AS (SELECT {key} AS k, bucket, sum(n) AS n FROM cells GROUP BY k, bucket),"
        " r AS (SELECT k, bucket,"
        " sum(n) OVER (PARTITION BY k ORDER BY bucket ROWS UNBOUNDED PRECEDING) AS cum,"
        " sum(n) OVER (PARTITION BY k) AS total FROM d)"
        " SELECT k, max(total) AS total,"
        " min(CASE WHEN cum * 100 >= total * 50 THEN bucket END),"
        " min(CASE WHEN cum * 100 >= total * 95 THEN bucket END),"
        f" max(bucket) FROM r GROUP BY k ORDER BY {order}"
    )
    if limit is not None:
        sql += f" LIMIT {int(limit)}"
    return conn.execute(sql, params).fetchall()


def durations(conn: sqlite3.Connection, f: Filters) -> dict[str, Any]:
    """p50/p95 of `properties.duration_ms` overall, per time bucket and per event name
    (per day: to 2 significant digits, see `over_time_cte`)."""
    over_time = _percentiles(conn, *over_time_cte(f), _time_key(f), "k")
    _materialise_histogram(conn, f)
    try:
        histogram = f"WITH cells AS (SELECT event, bucket, n FROM {_HISTOGRAM})"
        overall = _percentiles(conn, histogram, {}, "0", "k")
        by_event = _percentiles(conn, histogram, {}, "event", "total DESC, k", TOP)
    finally:
        conn.execute(f"DROP TABLE IF EXISTS {_HISTOGRAM}")
    count, p50, p95, top = overall[0][1:] if overall else (0, None, None, None)
    return {
        "count": count,
        "p50_ms": p50,
        "p95_ms": p95,
        "max_ms": top,
        "over_time": [
            {"t_ms": _bucket_start_ms(f, k), "count": n, "p50_ms": a, "p95_ms": b}
            for k, n, a, b, _ in over_time
        ],
        "by_event": [
            {"name": k, "count": n, "p50_ms": a, "p95_ms": b, "max_ms": m}
            for k, n, a, b, m in by_event
        ],
    }


def uploads(conn: sqlite3.Connection, limit: int = 50) -> dict[str, Any]:
    """The uploader's receipts, newest first, when the buffer has them (migration 2)."""
    exists = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'upload_receipts'"
    ).fetchone()
    if not exists:
        return {"available": False, "recent": [], "totals": {}}
    recent = [
        dict(
            zip(
                ("sent_ms", "backend", "events", "status", "http_status", "error"), row, strict=True
            )
        )
        for row in conn.execute(
            "SELECT sent_ms, backend, events, status, http_status, error FROM upload_receipts"
            " ORDER BY id DESC LIMIT ?",
            (limit,),
        )
    ]
    totals = {
        status: {"batches": batches, "events": events}
        for status, batches, events in conn.execute(
            "SELECT status, count(*), coalesce(sum(events), 0) FROM upload_receipts GROUP BY status"
        )
    }
    return {"available": True, "recent": recent, "totals": totals}


def collect(conn: sqlite3.Connection, f: Filters) -> dict[str, Any]:
    """Every view the page shows, read in one transaction so they agree with each other."""
    conn.execute("BEGIN")
    try:
        return collect_within(conn, f)
    finally:
        conn.execute("COMMIT")


def collect_within(conn: sqlite3.Connection, f: Filters) -> dict[str, Any]:
    """`collect` inside the caller's transaction (which reads more views in it)."""
    when = span(conn)
    f = f.resolved(when["first_ms"], when["last_ms"], minutes=fits_minutes(conn, f))
    try:
        cells = _materialise_counts(conn, f)
        # The menus ignore the agent and event filters; without those the cells
        # are the same, so they can share the table too.
        unfiltered = f.agent is None and f.event is None
        return {
            "filters": f.as_dict(),
            "span": when,
            "totals": _totals(conn, *cells),
            "over_time": _minutes(conn, f)
            if f.bucket == "minute"
            else _over_time(conn, f, *cells, "hour"),
            "by_agent": _breakdown(conn, *cells, "agent"),
            "by_event": _breakdown(conn, *cells, "event"),
            "durations": durations(conn, f),
            "choices": _choices(conn, *cells) if unfiltered else choices(conn, f),
            "uploads": uploads(conn),
        }
    finally:
        conn.execute(f"DROP TABLE IF EXISTS {_COUNTS}")
