"""Read-side SQL: stats and per-agent analytics over a window of whole UTC days.

Counts come from the rollups (never a scan of raw events); only the duration
percentiles read `events`, bounded to the window by the time index.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import asyncpg

from agent_telemetry_server.validation import MAX_DURATION_MS


def window(days: int, today: date | None = None) -> tuple[date, date]:
    """The last `days` UTC days, today included."""
    end = today or datetime.now(UTC).date()
    return end - timedelta(days=days - 1), end


async def stats(conn: asyncpg.Connection, start: date, end: date) -> dict[str, Any]:
    totals = await conn.fetchrow(
        "SELECT coalesce(sum(events), 0) AS events, count(DISTINCT anonymous_id) AS ids"
        " FROM rollup_installs_daily WHERE day BETWEEN $1 AND $2",
        start,
        end,
    )
    by_day = await conn.fetch(
        "SELECT day, sum(events) AS events, count(*) AS ids"
        " FROM rollup_installs_daily WHERE day BETWEEN $1 AND $2 GROUP BY day ORDER BY day",
        start,
        end,
    )
    # count(DISTINCT) here, not a hash aggregate per installation: (day, event,
    # installation) groups are nearly as many as the rows, and the primary key already
    # hands the rows over in (day, event) order.
    by_event = await conn.fetch(
        "SELECT day, event, sum(events) AS events, count(DISTINCT anonymous_id) AS ids"
        " FROM rollup_daily WHERE day BETWEEN $1 AND $2"
        " GROUP BY day, event ORDER BY day, event",
        start,
        end,
    )
    assert totals is not None
    return {
        "from": start.isoformat(),
        "to": end.isoformat(),
        "events": int(totals["events"]),
        "unique_anonymous_ids": int(totals["ids"]),
        "by_day": [
            {
                "day": r["day"].isoformat(),
                "events": int(r["events"]),
                "unique_anonymous_ids": r["ids"],
            }
            for r in by_day
        ],
        "by_day_and_event": [
            {
                "day": r["day"].isoformat(),
                "event": r["event"],
                "events": int(r["events"]),
                "unique_anonymous_ids": r["ids"],
            }
            for r in by_event
        ],
    }


async def agents(conn: asyncpg.Connection, start: date, end: date) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        """
        WITH per_install AS (
            SELECT agent, anonymous_id, sum(events) AS events, sum(errors) AS errors,
                   min(day) AS first_day, max(day) AS last_day
            FROM rollup_daily WHERE day BETWEEN $1 AND $2
            GROUP BY agent, anonymous_id
        ), event_types AS (
            SELECT agent, count(*) AS event_types
            FROM (SELECT agent, event FROM rollup_daily WHERE day BETWEEN $1 AND $2
                  GROUP BY agent, event) AS pairs
            GROUP BY agent
        )
        SELECT p.agent, sum(p.events) AS events, sum(p.errors) AS errors, count(*) AS ids,
               t.event_types, min(p.first_day) AS first_day, max(p.last_day) AS last_day
        FROM per_install p JOIN event_types t USING (agent)
        GROUP BY p.agent, t.event_types ORDER BY sum(p.events) DESC, p.agent
        """,
        start,
        end,
    )
    return [
        {
            "agent": r["agent"] or None,
            "events": int(r["events"]),
            "errors": int(r["errors"]),
            "unique_anonymous_ids": r["ids"],
            "event_types": r["event_types"],
            "first_day": r["first_day"].isoformat(),
            "last_day": r["last_day"].isoformat(),
        }
        for r in rows
    ]


async def errors(conn: asyncpg.Connection, start: date, end: date) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        """
        SELECT agent, event, sum(events) AS events, sum(errors) AS errors
        FROM rollup_daily WHERE day BETWEEN $1 AND $2
        GROUP BY agent, event
        ORDER BY sum(errors)::float8 / sum(events) DESC, agent, event
        """,
        start,
        end,
    )
    return [
        {
            "agent": r["agent"] or None,
            "event": r["event"],
            "events": int(r["events"]),
            "errors": int(r["errors"]),
            "error_rate": round(int(r["errors"]) / int(r["events"]), 6),
        }
        for r in rows
    ]


async def performance(conn: asyncpg.Connection, start: date, end: date) -> list[dict[str, Any]]:
    # Half-open range on ts so the time index (BRIN or hypertable chunks) bounds the scan.
    # Durations above the cap are left out, as ingest leaves them out now: rows stored
    # before it had one could hold 1e308, and two of those overflow a float8 avg().
    rows = await conn.fetch(
        """
        SELECT coalesce(agent, '') AS agent, count(*) AS samples,
               percentile_cont(0.5) WITHIN GROUP (ORDER BY duration_ms) AS p50,
               percentile_cont(0.95) WITHIN GROUP (ORDER BY duration_ms) AS p95,
               avg(duration_ms) AS mean, max(duration_ms) AS max
        FROM events
        WHERE ts >= $1::date::timestamptz AND ts < ($2::date + 1)::timestamptz
          AND duration_ms <= $3
        GROUP BY 1 ORDER BY 1
        """,
        start,
        end,
        MAX_DURATION_MS,
    )
    return [
        {
            "agent": r["agent"] or None,
            "samples": r["samples"],
            "p50_ms": r["p50"],
            "p95_ms": r["p95"],
            "mean_ms": r["mean"],
            "max_ms": r["max"],
        }
        for r in rows
    ]
