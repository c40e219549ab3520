"""The team dashboard's SQL: every installation together, over a window of whole UTC days.

Everything here reads the daily rollups (rollup_daily and migration 0005's tables),
never the raw events, so the cost of a request follows the number of rollup rows in the
window, not the number of events. Day series list every day of the window, zeros
included, so a chart spans the window. Distinct installations are counted by grouping
per installation first (a hash aggregate) and counting the groups: count(DISTINCT ...)
would sort every row.

Cost is what clients reported (`cost_usd`); the server keeps no price table. A figure
with no reported cost behind it is `null` — "cost unknown" — never a guess.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

import asyncpg

from agent_telemetry_server.validation import MAX_DURATION_MS

COST_RULE = (
    "cost_usd is the sum of the cost_usd that events reported; calls without one are"
    " counted in uncosted_calls, and a figure with no reported cost at all is null"
    " (cost unknown): the server does not price tokens"
)
DURATION_RULE = (
    "percentiles are nearest-rank over histograms kept to two significant digits"
    " (whole ms below 100 ms): within 5% of the exact value"
)


# orjson writes integers up to 64 bits; JSON readers in general go no further than signed.
_LARGEST_WHOLE = 2**63 - 1


def _whole(value: Decimal | int) -> int | float:
    """A total as an integer, or as a float once it is too large for a 64-bit integer
    (token totals are summed in numeric and have no upper bound)."""
    number = int(value)
    return number if number <= _LARGEST_WHOLE else float(value)


def _rate(errors: int, total: int) -> float | None:
    return round(errors / total, 6) if total else None


def _usd(value: Decimal | None, costed: int) -> float | None:
    return round(float(value), 6) if costed and value is not None else None


async def overview(conn: asyncpg.Connection, start: date, end: date) -> dict[str, Any]:
    totals = await conn.fetchrow(
        """
        SELECT coalesce(sum(events), 0) AS events, coalesce(sum(errors), 0) AS errors,
               count(DISTINCT anonymous_id) AS installs
        FROM rollup_installs_daily WHERE day BETWEEN $1 AND $2
        """,
        start,
        end,
    )
    # Distinct names through a hash aggregate of the (agent, event) pairs: far quicker
    # than count(DISTINCT ...), which sorts every row.
    names = await conn.fetchrow(
        """
        SELECT count(DISTINCT agent) FILTER (WHERE agent <> '') AS agents,
               count(DISTINCT event) AS event_types
        FROM (SELECT agent, event FROM rollup_daily WHERE day BETWEEN $1 AND $2
              GROUP BY agent, event) AS pairs
        """,
        start,
        end,
    )
    by_day = await conn.fetch(
        """
        WITH per_day AS (
            SELECT day, sum(events) AS events, sum(errors) AS errors, count(*) AS installs
            FROM rollup_installs_daily WHERE day BETWEEN $1 AND $2 GROUP BY day
        )
        SELECT d::date AS day, coalesce(p.events, 0) AS events,
               coalesce(p.errors, 0) AS errors, coalesce(p.installs, 0) AS installs
        FROM generate_series($1::date, $2::date, interval '1 day') AS d
        LEFT JOIN per_day p ON p.day = d::date
        ORDER BY 1
        """,
        start,
        end,
    )
    assert totals is not None and names is not None
    return {
        "totals": {
            "events": int(totals["events"]),
            "errors": int(totals["errors"]),
            "error_rate": _rate(int(totals["errors"]), int(totals["events"])),
            "installs": totals["installs"],
            "agents": names["agents"],
            "event_types": names["event_types"],
        },
        "by_day": [
            {
                "day": r["day"].isoformat(),
                "events": int(r["events"]),
                "errors": int(r["errors"]),
                "error_rate": _rate(int(r["errors"]), int(r["events"])),
                "installs": r["installs"],
            }
            for r in by_day
        ],
    }


_PERCENTILES = """
WITH h AS (
    SELECT name, bucket_ms, sum(samples) AS n
    FROM rollup_durations_daily
    WHERE kind = $3 AND day BETWEEN $1 AND $2 AND bucket_ms <= $4
    GROUP BY name, bucket_ms
), c AS (
    SELECT name, bucket_ms, n,
           sum(n) OVER (PARTITION BY name ORDER BY bucket_ms) AS upto,
           sum(n) OVER (PARTITION BY name) AS total
    FROM h
)
SELECT name, max(total) AS samples,
       min(bucket_ms) FILTER (WHERE upto >= ceil(0.50 * total)) AS p50,
       min(bucket_ms) FILTER (WHERE upto >= ceil(0.95 * total)) AS p95,
       max(bucket_ms) AS max
FROM c GROUP BY name
"""


async def _percentiles(
    conn: asyncpg.Connection, start: date, end: date, kind: str
) -> dict[str, dict[str, Any]]:
    # Buckets above the duration cap can only be from before ingest applied it: left out.
    rows = await conn.fetch(_PERCENTILES, start, end, kind, MAX_DURATION_MS)
    return {
        r["name"]: {
            "samples": int(r["samples"]),
            "p50_ms": r["p50"],
            "p95_ms": r["p95"],
            "max_ms": r["max"],
        }
        for r in rows
    }


async def durations(conn: asyncpg.Connection, start: date, end: date) -> list[dict[str, Any]]:
    by_event = await _percentiles(conn, start, end, "event")
    ordered = sorted(by_event.items(), key=lambda item: (-item[1]["samples"], item[0]))
    return [{"event": name, **figures} for name, figures in ordered]


_NO_DURATIONS = {"samples": 0, "p50_ms": None, "p95_ms": None, "max_ms": None}


async def models(conn: asyncpg.Connection, start: date, end: date) -> dict[str, Any]:
    rows = await conn.fetch(
        """
        WITH per_install AS (
            SELECT model, anonymous_id, sum(calls) AS calls, sum(errors) AS errors,
                   sum(input_tokens) AS input_tokens, sum(output_tokens) AS output_tokens,
                   sum(costed_calls) AS costed_calls, sum(cost_usd) AS cost_usd
            FROM rollup_models_daily WHERE day BETWEEN $1 AND $2
            GROUP BY model, anonymous_id
        )
        SELECT model, sum(calls) AS calls, sum(errors) AS errors,
               sum(input_tokens) AS input_tokens, sum(output_tokens) AS output_tokens,
               sum(costed_calls) AS costed_calls, sum(cost_usd) AS cost_usd,
               count(*) AS installs
        FROM per_install GROUP BY model ORDER BY sum(calls) DESC, model
        """,
        start,
        end,
    )
    by_day = await conn.fetch(
        """
        SELECT day, model, sum(calls) AS calls, sum(input_tokens) AS input_tokens,
               sum(output_tokens) AS output_tokens, sum(costed_calls) AS costed_calls,
               sum(cost_usd) AS cost_usd
        FROM rollup_models_daily WHERE day BETWEEN $1 AND $2
        GROUP BY day, model ORDER BY day, model
        """,
        start,
        end,
    )
    latency = await _percentiles(conn, start, end, "model")
    return {
        "cost_rule": COST_RULE,
        "models": [
            {
                "model": r["model"],
                "calls": int(r["calls"]),
                "errors": int(r["errors"]),
                "error_rate": _rate(int(r["errors"]), int(r["calls"])),
                "input_tokens": _whole(r["input_tokens"]),
                "output_tokens": _whole(r["output_tokens"]),
                "cost_usd": _usd(r["cost_usd"], int(r["costed_calls"])),
                "costed_calls": int(r["costed_calls"]),
                "uncosted_calls": int(r["calls"]) - int(r["costed_calls"]),
                "installs": r["installs"],
                "duration": latency.get(r["model"], _NO_DURATIONS),
            }
            for r in rows
        ],
        "by_day": [
            {
                "day": r["day"].isoformat(),
                "model": r["model"],
                "calls": int(r["calls"]),
                "input_tokens": _whole(r["input_tokens"]),
                "output_tokens": _whole(r["output_tokens"]),
                "cost_usd": _usd(r["cost_usd"], int(r["costed_calls"])),
                "costed_calls": int(r["costed_calls"]),
            }
            for r in by_day
        ],
    }


def _cost_row(r: asyncpg.Record) -> dict[str, Any]:
    calls, costed = int(r["calls"]), int(r["costed_calls"])
    return {
        "calls": calls,
        "input_tokens": _whole(r["input_tokens"]),
        "output_tokens": _whole(r["output_tokens"]),
        "cost_usd": _usd(r["cost_usd"], costed),
        "costed_calls": costed,
        "uncosted_calls": calls - costed,
    }


_COST_SUMS = (
    "coalesce(sum(calls), 0) AS calls, coalesce(sum(input_tokens), 0) AS input_tokens,"
    " coalesce(sum(output_tokens), 0) AS output_tokens,"
    " coalesce(sum(costed_calls), 0) AS costed_calls, coalesce(sum(cost_usd), 0) AS cost_usd"
)


async def cost(conn: asyncpg.Connection, start: date, end: date) -> dict[str, Any]:
    total = await conn.fetchrow(
        f"SELECT {_COST_SUMS} FROM rollup_models_daily WHERE day BETWEEN $1 AND $2", start, end
    )
    by_day = await conn.fetch(
        f"""
        WITH per_day AS (
            SELECT day, {_COST_SUMS}
            FROM rollup_models_daily WHERE day BETWEEN $1 AND $2 GROUP BY day
        )
        SELECT d::date AS day, coalesce(p.calls, 0) AS calls,
               coalesce(p.input_tokens, 0) AS input_tokens,
               coalesce(p.output_tokens, 0) AS output_tokens,
               coalesce(p.costed_calls, 0) AS costed_calls, coalesce(p.cost_usd, 0) AS cost_usd
        FROM generate_series($1::date, $2::date, interval '1 day') AS d
        LEFT JOIN per_day p ON p.day = d::date
        ORDER BY 1
        """,
        start,
        end,
    )
    by_agent = await conn.fetch(
        f"""
        SELECT agent, {_COST_SUMS} FROM rollup_models_daily
        WHERE day BETWEEN $1 AND $2 GROUP BY agent ORDER BY sum(cost_usd) DESC, agent
        """,
        start,
        end,
    )
    assert total is not None
    return {
        "cost_rule": COST_RULE,
        "total": _cost_row(total),
        "by_day": [{"day": r["day"].isoformat(), **_cost_row(r)} for r in by_day],
        "by_agent": [{"agent": r["agent"] or None, **_cost_row(r)} for r in by_agent],
    }


async def tools(conn: asyncpg.Connection, start: date, end: date) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        """
        WITH per_install AS (
            SELECT tool, anonymous_id, sum(calls) AS calls, sum(errors) AS errors
            FROM rollup_tools_daily WHERE day BETWEEN $1 AND $2
            GROUP BY tool, anonymous_id
        )
        SELECT tool, sum(calls) AS calls, sum(errors) AS errors, count(*) AS installs
        FROM per_install GROUP BY tool ORDER BY sum(calls) DESC, tool
        """,
        start,
        end,
    )
    latency = await _percentiles(conn, start, end, "tool")
    return [
        {
            "tool": r["tool"],
            "calls": int(r["calls"]),
            "errors": int(r["errors"]),
            "error_rate": _rate(int(r["errors"]), int(r["calls"])),
            "installs": r["installs"],
            "duration": latency.get(r["tool"], _NO_DURATIONS),
        }
        for r in rows
    ]
