"""stats: models, tools, runs and cost from the buffer, as a table or as the API's JSON."""

from __future__ import annotations

import math
import sqlite3
import time
from datetime import UTC, datetime
from typing import Any

import click

from agent_telemetryd.cli.buffer_access import read_buffer
from agent_telemetryd.cli.common import get_config, print_json

VIEWS = ("models", "tools", "runs", "cost")


@click.command()
@click.argument("view", type=click.Choice(VIEWS))
@click.option("--since", help="From this far back: `30m`, `24h`, `7d`, `2w`, epoch ms or RFC 3339.")
@click.option("--until", help="Up to this time (exclusive), as --since.")
@click.option("--agent", help="Only this agent's events.")
@click.option("--event", "event_name", help="Only events with this name (runs: this root).")
@click.option(
    "--model",
    help="Only calls naming this model, answered or asked for (runs: runs that called it).",
)
@click.option("--tool", help="Only calls of this tool.")
@click.option(
    "--bucket",
    type=click.Choice(["auto", "minute", "hour", "day"]),
    default="auto",
    show_default=True,
    help="cost: the time buckets.",
)
@click.option("--limit", type=click.IntRange(1, 500), default=50, show_default=True, help="runs.")
@click.option("--json", "as_json", is_flag=True, help="Print the dashboard API's JSON.")
def stats(
    view: str,
    since: str | None,
    until: str | None,
    agent: str | None,
    event_name: str | None,
    model: str | None,
    tool: str | None,
    bucket: str,
    limit: int,
    as_json: bool,
) -> None:
    """Models, tools, runs or cost over time, from your own data.

    The same numbers as the dashboard (`--json` prints its API's answer). Works with the
    daemon down: the buffer is read read-only. Costs not reported by an agent are priced
    from tokens with the price table shown, plus `[prices."<model>"]` in the config; a
    model with no price shows its tokens and an unknown cost.

    \b
    Example:
        agent-telemetry stats models --since 7d
        agent-telemetry stats runs --agent planner --json
    """
    # Imported here: the dashboard package is not needed by the commands that only talk
    # to the daemon.
    from agent_telemetryd.analytics.prices import price_book
    from agent_telemetryd.dashboard.agent_views import AgentQuery
    from agent_telemetryd.dashboard.filters import Filters
    from agent_telemetryd.dashboard.views import read_agent_view, without_rollups
    from agent_telemetryd.time_filters import parse_time

    config = get_config()
    now_ms = int(time.time() * 1000)
    try:
        # As `export` reads them; the filters then get epoch milliseconds.
        since_ms = parse_time(since, now_ms, "--since")
        until_ms = parse_time(until, now_ms, "--until")
    except ValueError as error:
        raise click.ClickException(str(error)) from None
    query = {
        "since": "" if since_ms is None else str(since_ms),
        "until": "" if until_ms is None else str(until_ms),
        "agent": agent or "",
        "event": event_name or "",
        "model": model or "",
        "tool": tool or "",
        "bucket": bucket,
        "tz": str(_local_offset_min()),
    }
    try:
        filters = Filters.from_query(query, now_ms)
    except ValueError as error:
        raise click.ClickException(str(error)) from None
    request = AgentQuery(filters, price_book(config.prices), limit)
    with read_buffer(config) as conn:
        try:
            if conn is not None:
                without_rollups(conn)
            data = read_agent_view(view, conn, request)
        except sqlite3.Error as error:
            raise click.ClickException(f"cannot read {config.paths.database}: {error}") from None
    if as_json:
        print_json(data)
        return
    for line in TABLES[view](data):
        click.echo(line)
    prices = data.get("prices")
    if prices:
        click.echo(f"\nprices: table {prices['version']}" + _overridden(prices))


def _local_offset_min() -> int:
    offset = datetime.now().astimezone().utcoffset()
    return int(offset.total_seconds() // 60) if offset else 0


def _overridden(prices: dict[str, Any]) -> str:
    names = prices.get("overridden") or []
    return f", config prices for {', '.join(names)}" if names else ""


def _cost(value: float | None, unpriced: int) -> str:
    if value is None:
        return "unknown"
    text = _money(value)
    return f"{text} +{unpriced} unknown" if unpriced else text


def _money(value: float) -> str:
    """A cost as the page shows it: a call of a cheap model costs a few millionths of a
    dollar, which four decimals would show as $0.0000, as if it were free."""
    if value == 0:
        return "$0"
    if value < 0.0001:
        return f"${value:.{1 - math.floor(math.log10(value))}f}"  # two significant digits
    return f"${value:,.4f}" if value < 1 else f"${value:,.2f}"


def _ms(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value / 1000:.2f}s" if value >= 1000 else f"{value:g}ms"


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def _table(heads: tuple[str, ...], rows: list[tuple[Any, ...]]) -> list[str]:
    if not rows:
        return ["nothing in this range"]
    cells = [tuple(str(cell) for cell in row) for row in [heads, *rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(heads))]
    return [
        "  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(
            zip(row, widths, strict=True)
        ))
        for row in cells
    ]  # fmt: skip


def _models(data: dict[str, Any]) -> list[str]:
    rows = [
        (
            m["model"] or "(no model)",
            m["calls"],
            f"{m['input_tokens']:,}",
            f"{m['output_tokens']:,}",
            _cost(m["cost_usd"], m["unpriced_calls"]),
            _rate(m["error_rate"]),
            _ms(m["p50_ms"]),
            _ms(m["p95_ms"]),
        )
        for m in data["models"]
    ]
    heads = ("model", "calls", "input tokens", "output tokens", "cost", "errors", "p50", "p95")
    return _table(heads, rows)


def _tools(data: dict[str, Any]) -> list[str]:
    rows = [
        (t["tool"], t["calls"], t["errors"], _rate(t["error_rate"]), _ms(t["p50_ms"]),
         _ms(t["p95_ms"]))
        for t in data["tools"]
    ]  # fmt: skip
    return _table(("tool", "calls", "errors", "error rate", "p50", "p95"), rows)


def _when(ms: float) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).astimezone().strftime("%Y-%m-%d %H:%M:%S")


def _runs(data: dict[str, Any]) -> list[str]:
    rows = [
        (
            _when(r["start_ms"]),
            r["root"] or "(root not seen)",
            r["agent"],
            _ms(r["duration_ms"]),
            r["spans"],
            r["llm_calls"],
            f"{r['input_tokens']:,}/{r['output_tokens']:,}",
            _cost(r["cost_usd"], r["unpriced_calls"]),
            r["errors"],
        )
        for r in data["runs"]
    ]
    heads = ("start", "run", "agent", "duration", "spans", "llm", "tokens in/out", "cost", "errors")
    lines = _table(heads, rows)
    if data.get("next"):
        lines.append(f"(more: --limit, or the API's `before={data['next']}`)")
    return lines


def _cost_over_time(data: dict[str, Any]) -> list[str]:
    rows = [
        (
            _when(point["t"]),
            point["calls"],
            f"{point['input_tokens']:,}",
            f"{point['output_tokens']:,}",
            _cost(point["cost_usd"], point["unpriced_calls"]),
        )
        for point in data["series"]
        if point["calls"]
    ]
    heads = (f"{data['bucket']} from", "calls", "input tokens", "output tokens", "cost")
    return _table(heads, rows)


TABLES = {"models": _models, "tools": _tools, "runs": _runs, "cost": _cost_over_time}
