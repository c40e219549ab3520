"""The agent analytics' queries: models, tools, cost over time, durations by name, OTLP
metric cells, over the rollups of `analytics_facts` plus the events not folded yet.

Each function returns a few rows per model, tool, time bucket or series, whatever the
buffer holds. Costs are computed here, when read: the rollups keep reported costs and the
tokens of calls that reported none, and those tokens are priced by joining a per-request
table of price periods (`load_prices`: the rows `analytics.prices.PriceBook.rows` gives),
so a price override applies to past events too. A call is priced at the prices of the
hour it was made (`called_hour`), and counted in the time bucket it was received in, as
every view counts events. Minute buckets (ranges of a few hours) read the events
themselves; hours and days read the rollups.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any, Protocol

from agent_telemetryd.store.analytics_facts import facts_select
from agent_telemetryd.store.dashboard_sql import HOUR_MS, CellFilter, range_where

Params = dict[str, Any]
MINUTE_MS = 60_000
PRICES = "temp.agent_request_prices"
MODEL_CELLS = "temp.agent_request_models"
_COST = (
    "(c.priced_input * p.input + c.priced_cache_read * coalesce(p.cache_read, p.input)"
    " + c.priced_cache_write * coalesce(p.cache_write, p.input)"
    " + c.priced_output * p.output) / 1000000.0"
)


class AnalyticsFilter(CellFilter, Protocol):
    """The dashboard's `Filters` as these queries read them: the cells' terms, and a model,
    a tool and the viewer's time zone."""

    @property
    def model(self) -> str | None: ...
    @property
    def tool(self) -> str | None: ...
    @property
    def tz_offset_min(self) -> int: ...


def rollup_where(f: AnalyticsFilter, *, name: str | None = None) -> tuple[str, Params]:
    """Terms on a rollup's hour, agent and event columns, and on `name` (the model or tool
    column) when the matching filter is set."""
    terms: list[str] = []
    params: Params = {}
    if f.first_hour is not None:
        terms.append("hour >= :first_hour")
        params["first_hour"] = f.first_hour
    if f.end_hour is not None:
        terms.append("hour < :end_hour")
        params["end_hour"] = f.end_hour
    for column, value in (("agent", f.agent), ("event", f.event)):
        if value is not None:
            terms.append(f"{column} = :{column}")
            params[column] = value
    if name is not None:
        value = f.model if name == "model" else f.tool
        if value is not None:
            terms.append(MODEL_MATCH if name == "model" else "tool = :tool")
            params[name] = value
    return " AND ".join(terms) or "1", params


TAIL = "temp.agent_request_tail"
# The model filter finds a call by either of its names: the one it is counted under, or
# the one it asked for (a deployment or alias name) when that differs.
MODEL_MATCH = "(model = :model OR requested = :model)"


def prepare_tail(conn: sqlite3.Connection) -> None:
    """The facts of the events not folded yet, read once per request into a scratch
    table that every view of the request reads: a few thousand rows between background
    folds; after an upgrade, before the first fold, the whole buffer once, not once per
    view."""
    conn.execute(f"DROP TABLE IF EXISTS {TAIL}")
    conn.execute(
        f"CREATE TABLE {TAIL} AS SELECT * FROM"
        f" ({facts_select('e.id > (SELECT folded_id FROM agent_state)', series='attributes')})"
    )


def facts_from(f: AnalyticsFilter, *, tail: bool) -> tuple[str, Params]:
    """A subquery of facts under the filters' time, agent and event: the unfolded tail
    (`prepare_tail`'s table), or for minute buckets every event of the range."""
    if not tail:
        where, params = range_where(f)
        return f"({facts_select(where, series='attributes')})", params
    where, params = range_where(f, alias="")
    return f"(SELECT * FROM {TAIL} WHERE {where})", params


def time_key(f: AnalyticsFilter, hour: str = "hour") -> str:
    """SQL for a cell's time bucket from its `hour` column (hour or local day)."""
    if f.bucket == "day":
        return f"(({hour} * 60 + {int(f.tz_offset_min)}) / 1440)"
    return hour


def bucket_start_ms(f: AnalyticsFilter, key: int) -> int:
    if f.bucket == "day":
        return (key * 1440 - f.tz_offset_min) * MINUTE_MS
    if f.bucket == "minute":
        return key * MINUTE_MS
    return key * HOUR_MS


# --- models and cost -------------------------------------------------------------------

_MODEL_SUMS = (
    "calls, errors, input_tokens, output_tokens, cache_read_tokens, cache_write_tokens,"
    " reported_calls, reported_cost, unreported_calls, no_usage_calls, priced_input,"
    " priced_cache_read, priced_cache_write, priced_output"
)
_FACT_SUMS = ", ".join(
    f"{expression} AS {name}"
    for expression, name in zip(
        (
            "count(*)",
            "sum(error)",
            "sum(coalesce(input, 0))",
            "sum(coalesce(output, 0))",
            "sum(coalesce(cache_read, 0))",
            "sum(coalesce(cache_write, 0))",
            "sum(cost IS NOT NULL)",
            "coalesce(sum(cost), 0)",
            "sum(cost IS NULL)",
            "sum(cost IS NULL AND priced_input IS NULL)",
            "sum(coalesce(priced_input, 0))",
            "sum(coalesce(priced_cache_read, 0))",
            "sum(coalesce(priced_cache_write, 0))",
            "sum(coalesce(priced_output, 0))",
        ),
        _MODEL_SUMS.split(", "),
        strict=True,
    )
)


def materialise_model_cells(conn: sqlite3.Connection, f: AnalyticsFilter) -> None:
    """The filtered LLM calls as `MODEL_CELLS(t, called_hour, model, requested, provider,
    <sums>)`, one row per time bucket, hour made in and pair of names: what the models
    view and the cost series read."""
    conn.execute(f"DROP TABLE IF EXISTS {MODEL_CELLS}")
    sums = ", ".join(f"sum({column}) AS {column}" for column in _MODEL_SUMS.split(", "))
    if f.bucket == "minute":
        facts, params = facts_from(f, tail=False)
        source = (
            f"SELECT received_ms / {MINUTE_MS} AS t, called_hour, model, requested,"
            f" max(provider) AS provider, {_FACT_SUMS} FROM {facts}"
            f" WHERE llm{_and_model(f)} GROUP BY 1, 2, 3, 4"
        )
    else:
        rollup, params = rollup_where(f, name="model")
        facts, tail_params = facts_from(f, tail=True)
        params.update(tail_params)
        source = (
            f"SELECT {time_key(f)} AS t, called_hour, model, requested,"
            f" max(provider) AS provider, {sums} FROM agent_models WHERE {rollup}"
            " GROUP BY 1, 2, 3, 4 UNION ALL"
            f" SELECT {time_key(f)}, called_hour, model, requested, max(provider), {_FACT_SUMS}"
            f" FROM {facts} WHERE llm{_and_model(f)} GROUP BY 1, 2, 3, 4"
        )
    if f.model is not None:
        params["model"] = f.model
    conn.execute(
        f"CREATE TABLE {MODEL_CELLS} AS SELECT t, called_hour, model, requested,"
        f" max(provider) AS provider, {sums} FROM ({source})"
        " GROUP BY t, called_hour, model, requested",
        params,
    )


def _and_model(f: AnalyticsFilter) -> str:
    return f" AND {MODEL_MATCH}" if f.model is not None else ""


def load_prices(conn: sqlite3.Connection, rows: list[tuple[Any, ...]]) -> None:
    """This request's price periods (model and requested as the cells name them,
    from_hour, until_hour, USD per million input, output, cache_read, cache_write)."""
    conn.execute(f"DROP TABLE IF EXISTS {PRICES}")
    conn.execute(
        f"CREATE TABLE {PRICES} (model TEXT NOT NULL, requested TEXT NOT NULL,"
        " from_hour INTEGER NOT NULL, until_hour INTEGER NOT NULL, input REAL NOT NULL,"
        " output REAL NOT NULL, cache_read REAL, cache_write REAL)"
    )
    conn.executemany(f"INSERT INTO {PRICES} VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)


def cell_models(conn: sqlite3.Connection) -> list[tuple[str, str]]:
    """The (model, requested) pairs of the model cells: what is looked up in the prices."""
    return conn.execute(f"SELECT DISTINCT model, requested FROM {MODEL_CELLS}").fetchall()


def _priced_cells(source: str) -> str:
    """`source`'s rows (with the priced_* and call counts) with `cost` (reported plus what
    their tokens cost at the prices of the hour they were made in) and `unpriced` (calls
    whose cost is unknown: no price for the pair of names then, or nothing to price)."""
    return (
        f"SELECT c.*, c.reported_cost + CASE WHEN p.model IS NULL THEN 0 ELSE {_COST} END"
        " AS cost, CASE WHEN p.model IS NULL THEN c.unreported_calls ELSE c.no_usage_calls END"
        f" AS unpriced FROM {source} AS c LEFT JOIN {PRICES} AS p ON p.model = c.model"
        " AND p.requested = c.requested"
        " AND c.called_hour >= p.from_hour AND c.called_hour < p.until_hour"
    )


_TOTALS = (
    "sum(calls), sum(errors), sum(input_tokens), sum(output_tokens), sum(cache_read_tokens),"
    " sum(cache_write_tokens), sum(cost), sum(unpriced)"
)


def model_totals(conn: sqlite3.Connection) -> list[tuple[Any, ...]]:
    """(model, provider, calls, errors, input, output, cache_read, cache_write, cost,
    unpriced) per model, most calls first."""
    return conn.execute(
        f"SELECT model, max(provider), {_TOTALS} FROM ({_priced_cells(MODEL_CELLS)})"
        " GROUP BY model ORDER BY 3 DESC, model"
    ).fetchall()


def cost_series(conn: sqlite3.Connection, *, by_model: bool) -> list[tuple[Any, ...]]:
    """(t, [model,] calls, errors, input, output, cache_read, cache_write, cost, unpriced)
    per time bucket (and model), in time order."""
    key = "t, model" if by_model else "t"
    return conn.execute(
        f"SELECT {key}, {_TOTALS} FROM ({_priced_cells(MODEL_CELLS)}) GROUP BY {key} ORDER BY {key}"
    ).fetchall()


def drop_request_tables(conn: sqlite3.Connection) -> None:
    for table in (MODEL_CELLS, PRICES, RUN_CELLS, TAIL):
        conn.execute(f"DROP TABLE IF EXISTS {table}")


# --- tools and durations by name ------------------------------------------------------


def tool_totals(conn: sqlite3.Connection, f: AnalyticsFilter) -> list[tuple[Any, ...]]:
    """(tool, calls, errors) per tool, most calls first."""
    rollup, params = rollup_where(f, name="tool")
    facts, tail_params = facts_from(f, tail=True)
    params.update(tail_params)
    tool_filter = ""
    if f.tool is not None:
        tool_filter = " AND tool = :tool"
        params["tool"] = f.tool
    return conn.execute(
        "SELECT tool, sum(calls) AS n, sum(errors) FROM ("
        f" SELECT tool, calls, errors FROM agent_tools WHERE {rollup}"
        f" UNION ALL SELECT tool, 1, error FROM {facts} WHERE tool IS NOT NULL{tool_filter})"
        " GROUP BY tool ORDER BY n DESC, tool",
        params,
    ).fetchall()


def percentiles_by_name(
    conn: sqlite3.Connection, f: AnalyticsFilter, kind: str
) -> dict[str, tuple[int, float, float]]:
    """{model or tool: (count, p50, p95)} of durations, nearest rank over the histogram
    buckets (the dashboard's: exact below 1 s for whole ms, within 0.5% above)."""
    column = "model" if kind == "model" else "tool"
    rollup, params = rollup_where(f)
    params["kind"] = kind
    name_filter = ""
    value = f.model if kind == "model" else f.tool
    if value is not None:
        asked = " OR requested = :name" if kind == "model" else ""
        rollup += f" AND (name = :name{asked})"
        name_filter = f" AND ({column} = :name{asked})"
        params["name"] = value
    minutes = f.bucket == "minute"
    facts, more = facts_from(f, tail=not minutes)
    if minutes:
        rollup_part = ""
    else:
        rollup_part = (
            "SELECT name, bucket, sum(n) AS n FROM agent_durations"
            f" WHERE kind = :kind AND {rollup} GROUP BY name, bucket UNION ALL "
        )
    params.update(more)
    which = "llm" if kind == "model" else "tool IS NOT NULL"
    rows = conn.execute(
        f"WITH cells(name, bucket, n) AS ({rollup_part}"
        f" SELECT {column}, bucket, 1 FROM {facts}"
        f" WHERE {which} AND bucket IS NOT NULL{name_filter}),"
        " d AS (SELECT name, bucket, sum(n) AS n FROM cells GROUP BY name, bucket),"
        " r AS (SELECT name, bucket,"
        " sum(n) OVER (PARTITION BY name ORDER BY bucket ROWS UNBOUNDED PRECEDING) AS cum,"
        " sum(n) OVER (PARTITION BY name) AS total FROM d)"
        " SELECT name, max(total), min(CASE WHEN cum * 100 >= total * 50 THEN bucket END),"
        " min(CASE WHEN cum * 100 >= total * 95 THEN bucket END) FROM r GROUP BY name",
        params,
    ).fetchall()
    return {name: (count, p50, p95) for name, count, p50, p95 in rows}


# --- runs: the cost of a page of runs ---------------------------------------------------

RUN_CELLS = "temp.agent_request_run_models"


def materialise_run_cells(conn: sqlite3.Connection, trace_ids: list[str]) -> None:
    """The LLM calls of these runs per (trace, model, requested), with the hour the first
    was made in, folded and not."""
    conn.execute(f"DROP TABLE IF EXISTS {RUN_CELLS}")
    ids = {"ids": _json_list(trace_ids)}
    sums = (
        "sum(calls) AS calls, sum(reported_calls) AS reported_calls,"
        " sum(reported_cost) AS reported_cost, sum(unreported_calls) AS unreported_calls,"
        " sum(no_usage_calls) AS no_usage_calls, sum(priced_input) AS priced_input,"
        " sum(priced_cache_read) AS priced_cache_read,"
        " sum(priced_cache_write) AS priced_cache_write, sum(priced_output) AS priced_output"
    )
    conn.execute(
        f"CREATE TABLE {RUN_CELLS} AS SELECT trace_id, model, requested,"
        f" min(called_hour) AS called_hour, {sums} FROM ("
        " SELECT trace_id, model, requested, called_hour, calls, reported_calls, reported_cost,"
        " unreported_calls, no_usage_calls, priced_input, priced_cache_read,"
        " priced_cache_write, priced_output FROM agent_run_models"
        " WHERE trace_id IN (SELECT value FROM json_each(:ids))"
        " UNION ALL SELECT trace_id, model, requested, called_hour, 1, cost IS NOT NULL,"
        " coalesce(cost, 0),"
        " cost IS NULL, cost IS NULL AND priced_input IS NULL, coalesce(priced_input, 0),"
        " coalesce(priced_cache_read, 0), coalesce(priced_cache_write, 0),"
        f" coalesce(priced_output, 0) FROM {TAIL}"
        " WHERE llm AND trace_id IN (SELECT value FROM json_each(:ids)))"
        " GROUP BY trace_id, model, requested",
        ids,
    )


def run_cell_models(conn: sqlite3.Connection) -> list[tuple[str, str]]:
    return conn.execute(f"SELECT DISTINCT model, requested FROM {RUN_CELLS}").fetchall()


def run_costs(conn: sqlite3.Connection) -> dict[str, tuple[float, int]]:
    """{trace_id: (cost of the calls that could be priced, calls whose cost is unknown)}."""
    rows = conn.execute(
        f"SELECT trace_id, sum(cost), sum(unpriced) FROM ({_priced_cells(RUN_CELLS)})"
        " GROUP BY trace_id"
    ).fetchall()
    return {trace_id: (cost, unpriced) for trace_id, cost, unpriced in rows}


def _json_list(values: list[str]) -> str:
    return json.dumps(values)
