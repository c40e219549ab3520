"""What the agent analytics' endpoints answer (/dashboard/api/models, tools, cost, runs,
run/<trace_id>, explore, metrics), as plain functions of a read connection.

The daemon runs them on its reader thread; `agent-telemetry stats`, the report and the
benchmark call them on a read-only connection of their own. Each reads in one
transaction. Costs are priced when read (`analytics.prices`), and every answer with a
cost carries the price table's version.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from agent_telemetryd.analytics.prices import ModelPrice, PriceBook, price_book
from agent_telemetryd.dashboard.filters import Filters
from agent_telemetryd.dashboard.run_views import explore, metrics, run_spans
from agent_telemetryd.store import analytics_sql as sql
from agent_telemetryd.store.analytics_runs import Run, runs_page
from agent_telemetryd.store.dashboard_sql import fits_minutes, span

DEFAULT_LIMIT = 50
MAX_LIMIT = 500
_TRACE_ID = re.compile(r"[0-9a-f]{32}")


@dataclass(frozen=True)
class AgentQuery:
    """A request to one of these views: the filters, the prices in force, and a page."""

    filters: Filters = field(default_factory=Filters)
    prices: PriceBook = field(default_factory=price_book)
    limit: int = DEFAULT_LIMIT
    before: str | None = None

    @classmethod
    def from_query(cls, query: dict[str, str] | Any, now_ms: int, prices: PriceBook) -> AgentQuery:
        """From URL parameters; a ValueError says what is wrong."""
        limit_text = query.get("limit") or str(DEFAULT_LIMIT)
        if not limit_text.isdigit() or not 1 <= int(limit_text) <= MAX_LIMIT:
            raise ValueError(f"limit must be a whole number from 1 to {MAX_LIMIT}")
        return cls(
            Filters.from_query(query, now_ms), prices, int(limit_text), query.get("before") or None
        )


View = Callable[[sqlite3.Connection, AgentQuery], dict[str, Any]]


@contextmanager
def snapshot(conn: sqlite3.Connection, *, tail: bool = True) -> Iterator[None]:
    """One read transaction with the unfolded tail read once (`tail`: the views that read
    rollups), and this request's scratch tables gone after it."""
    conn.execute("BEGIN")
    try:
        if tail:
            sql.prepare_tail(conn)
        yield
    finally:
        try:
            sql.drop_request_tables(conn)
        finally:
            conn.execute("COMMIT")


def resolved(conn: sqlite3.Connection, f: Filters, *, minutes: bool = False) -> Filters:
    when = span(conn)
    minutes = minutes and fits_minutes(conn, f)  # too many events to read one by one: hours
    return f.resolved(when["first_ms"], when["last_ms"], minutes=minutes)


def _rate(errors: int, calls: int) -> float | None:
    return round(errors / calls, 6) if calls else None


def _cost(cost: float | None, calls: int, unpriced: int) -> float | None:
    """The summed cost of the calls that could be priced; None when none could."""
    if calls and unpriced >= calls:
        return None
    return round(cost or 0.0, 9)


# --- models and cost over time --------------------------------------------------------


def models_in(conn: sqlite3.Connection, q: AgentQuery, f: Filters) -> dict[str, Any]:
    """The models view inside a snapshot, filters resolved: the model cells are left in
    place for `cost_in` to read."""
    sql.materialise_model_cells(conn, f)
    pairs = sql.cell_models(conn)
    sql.load_prices(conn, q.prices.rows(pairs))
    # A model's price and provider: those of the first of its pairs of names with a price.
    priced: dict[str, ModelPrice] = {}
    for model, requested in pairs:
        price = q.prices.price_for(model, requested)
        if price is not None:
            priced.setdefault(model, price)
    timing = sql.percentiles_by_name(conn, f, "model")
    rows = []
    totals = {"calls": 0, "input_tokens": 0, "output_tokens": 0, "cost": 0.0, "unpriced": 0}
    for (
        model,
        provider,
        calls,
        errors,
        tin,
        tout,
        cread,
        cwrite,
        cost,
        unpriced,
    ) in sql.model_totals(conn):
        _, p50, p95 = timing.get(model, (0, None, None))
        rows.append(
            {
                "model": model or None,
                "provider": provider or (priced[model].provider if model in priced else None),
                "calls": calls,
                "input_tokens": tin,
                "output_tokens": tout,
                "cache_read_tokens": cread,
                "cache_write_tokens": cwrite,
                "cost_usd": _cost(cost, calls, unpriced),
                "unpriced_calls": unpriced,
                "priced": model in priced,
                "errors": errors,
                "error_rate": _rate(errors, calls),
                "p50_ms": p50,
                "p95_ms": p95,
            }
        )
        for key, value in (("calls", calls), ("input_tokens", tin), ("output_tokens", tout)):
            totals[key] += value
        totals["cost"] += cost or 0.0
        totals["unpriced"] += unpriced
    return {
        "filters": f.as_dict(),
        "models": rows,
        "totals": {
            "calls": totals["calls"],
            "input_tokens": totals["input_tokens"],
            "output_tokens": totals["output_tokens"],
            "cost_usd": _cost(totals["cost"], totals["calls"], totals["unpriced"]),
            "unpriced_calls": totals["unpriced"],
        },
        "prices": q.prices.describe(),
    }


def models(conn: sqlite3.Connection, q: AgentQuery) -> dict[str, Any]:
    with snapshot(conn):
        return models_in(conn, q, resolved(conn, q.filters))


def cost_in(conn: sqlite3.Connection, q: AgentQuery, f: Filters) -> dict[str, Any]:
    """Tokens and cost per bucket, over the model cells `models_in` (or `cost`) made."""
    overall = sql.cost_series(conn, by_model=False)
    per_model = sql.cost_series(conn, by_model=True)
    keys = [row[0] for row in overall]
    span_keys = list(range(keys[0], keys[-1] + 1)) if keys else []
    series = _filled(span_keys, {row[0]: row[1:] for row in overall}, f)
    by_model: dict[str, dict[int, tuple[Any, ...]]] = {}
    for row in per_model:
        by_model.setdefault(row[1] or "", {})[row[0]] = row[2:]
    return {
        "filters": f.as_dict(),
        "bucket": f.bucket,
        "series": series,
        "by_model": {model: _filled(span_keys, found, f) for model, found in by_model.items()},
        "prices": q.prices.describe(),
    }


def _filled(keys: list[int], found: dict[int, tuple[Any, ...]], f: Filters) -> list[dict]:
    out = []
    for key in keys:
        calls, _, tin, tout, _, _, cost, unpriced = found.get(key, (0, 0, 0, 0, 0, 0, 0.0, 0))
        out.append(
            {
                "t": sql.bucket_start_ms(f, key),
                "calls": calls,
                "input_tokens": tin,
                "output_tokens": tout,
                "cost_usd": _cost(cost, calls, unpriced),
                "unpriced_calls": unpriced,
            }
        )
    return out


def cost(conn: sqlite3.Connection, q: AgentQuery) -> dict[str, Any]:
    with snapshot(conn):
        f = resolved(conn, q.filters, minutes=True)
        sql.materialise_model_cells(conn, f)
        sql.load_prices(conn, q.prices.rows(sql.cell_models(conn)))
        return cost_in(conn, q, f)


# --- tools -----------------------------------------------------------------------------


def tools_in(conn: sqlite3.Connection, f: Filters) -> dict[str, Any]:
    timing = sql.percentiles_by_name(conn, f, "tool")
    rows = []
    for tool, calls, errors in sql.tool_totals(conn, f):
        _, p50, p95 = timing.get(tool, (0, None, None))
        rows.append(
            {
                "tool": tool,
                "calls": calls,
                "errors": errors,
                "error_rate": _rate(errors, calls),
                "p50_ms": p50,
                "p95_ms": p95,
            }
        )
    return {"filters": f.as_dict(), "tools": rows}


def tools(conn: sqlite3.Connection, q: AgentQuery) -> dict[str, Any]:
    with snapshot(conn):
        return tools_in(conn, resolved(conn, q.filters))


# --- runs ------------------------------------------------------------------------------


def parse_run_cursor(before: str | None) -> tuple[float, str] | None:
    if before is None:
        return None
    start, _, trace_id = before.rpartition(":")
    try:
        start_ms = float(start)
    except ValueError:
        start_ms = None
    if start_ms is None or not _TRACE_ID.fullmatch(trace_id):
        raise ValueError("before must be the `next` cursor of a previous runs page")
    return start_ms, trace_id


def runs_in(conn: sqlite3.Connection, q: AgentQuery, f: Filters) -> dict[str, Any]:
    page = runs_page(conn, f, q.limit, parse_run_cursor(q.before))
    shown, more = page[: q.limit], len(page) > q.limit
    sql.materialise_run_cells(conn, [run.trace_id for run in shown])
    sql.load_prices(conn, q.prices.rows(sql.run_cell_models(conn)))
    costs = sql.run_costs(conn)
    last = shown[-1] if shown else None
    return {
        "filters": f.as_dict(),
        "runs": [_run_row(run, costs.get(run.trace_id)) for run in shown],
        "next": f"{_ms(last.start_ms)!r}:{last.trace_id}" if more and last else None,
        "prices": q.prices.describe(),
    }


def _run_row(run: Run, cost: tuple[float, int] | None) -> dict[str, Any]:
    spent, unpriced = cost if cost is not None else (0.0, 0)
    return {
        "trace_id": run.trace_id,
        "root": run.root,
        "agent": run.agent,
        "start_ms": _ms(run.start_ms),
        "duration_ms": _ms(round(run.end_ms - run.start_ms, 3)),
        "events": run.events,
        "spans": run.spans,
        "llm_calls": run.llm_calls,
        "input_tokens": run.input_tokens,
        "output_tokens": run.output_tokens,
        "cost_usd": _cost(spent, run.llm_calls, unpriced),
        "unpriced_calls": unpriced,
        "errors": run.errors,
    }


def _ms(value: float) -> float | int:
    """Whole milliseconds as an integer, whichever table the figure came from."""
    return int(value) if float(value).is_integer() else value


def runs(conn: sqlite3.Connection, q: AgentQuery) -> dict[str, Any]:
    with snapshot(conn):
        return runs_in(conn, q, resolved(conn, q.filters))


def run(conn: sqlite3.Connection, trace_id: str) -> dict[str, Any]:
    """One run's events, ordered for a waterfall."""
    if not _TRACE_ID.fullmatch(trace_id):
        raise ValueError("a trace id is 32 lowercase hex digits")
    with snapshot(conn, tail=False):
        return run_spans(conn, trace_id)


def first_load(conn: sqlite3.Connection, f: Filters, prices: PriceBook) -> dict[str, Any]:
    """The agent views the page opens with, inside the caller's snapshot: models, tools,
    cost over time (in minutes for a range of a few hours) and the first page of runs,
    keyed as their endpoints are named. `f` as the request gave it (not resolved)."""
    q = AgentQuery(f, prices)
    hourly, fine = resolved(conn, f), resolved(conn, f, minutes=True)
    try:
        sql.prepare_tail(conn)
        data = {"models": models_in(conn, q, hourly), "tools": tools_in(conn, hourly)}
        if fine.bucket != hourly.bucket:
            sql.materialise_model_cells(conn, fine)
            sql.load_prices(conn, prices.rows(sql.cell_models(conn)))
        data["cost"] = cost_in(conn, q, fine)
        data["runs"] = runs_in(conn, q, hourly)
        return data
    finally:
        sql.drop_request_tables(conn)


ENDPOINTS: dict[str, View] = {
    "models": models,
    "tools": tools,
    "cost": cost,
    "runs": runs,
    "explore": lambda conn, q: _explore(conn, q),
    "metrics": lambda conn, q: _metrics(conn, q),
}


def _explore(conn: sqlite3.Connection, q: AgentQuery) -> dict[str, Any]:
    with snapshot(conn, tail=False):
        return explore(conn, resolved(conn, q.filters), q.limit, q.before)


def _metrics(conn: sqlite3.Connection, q: AgentQuery) -> dict[str, Any]:
    with snapshot(conn):
        return metrics(conn, resolved(conn, q.filters, minutes=True))
