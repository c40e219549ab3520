"""Each dashboard endpoint's time with a million events in the buffer.

    .venv/bin/python -m bench.dashboard_queries            # 1,000,000 events
    .venv/bin/python -m bench.dashboard_queries --quick    # tiny: checks the code only

The buffer is seeded with plain sqlite3 `executemany` (30 days, 8 agents, 40 event
names, 40% with a duration, ~4% errors), as the daemon stores agent data (the GenAI
convention names): a fifth of the events are LLM calls (six models, one the price table
does not know; some report a cost), 15% tool calls, 2% OTLP metric points, and 100,000
spans in 10,000 runs (a root, four LLM calls and five tool calls each; the root arrives
after its spans). Then: the one-off folds of every event into the rollups (the
dashboard's, then the agent analytics', whose cost per event and per writer job is what
the writer thread pays), each endpoint with the rollups current (all time, the page's
default range of the last 7 days, one agent), each again with 2,000 events not yet
folded (what a request sees between background folds), and the worst case — nothing
folded at all, as right after an upgrade — for `all`. Each figure is the median of a
few runs; the endpoint's work is its SQL plus encoding the JSON answer, as the daemon's
handler does.
"""

from __future__ import annotations

import argparse
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from agent_telemetryd.analytics.prices import price_book
from agent_telemetryd.analytics.vocabulary import Vocabulary
from agent_telemetryd.dashboard.agent_views import ENDPOINTS as AGENT_ENDPOINTS
from agent_telemetryd.dashboard.agent_views import AgentQuery
from agent_telemetryd.dashboard.agent_views import run as run_view
from agent_telemetryd.dashboard.filters import Filters
from agent_telemetryd.dashboard.views import ENDPOINTS
from agent_telemetryd.events import Event
from agent_telemetryd.store import analytics_fold
from agent_telemetryd.store.dashboard_sql import fold_all
from agent_telemetryd.store.database import connect, open_buffer

DAY_MS = 86_400_000
INSERT = (
    "INSERT INTO events (uuid, event, ts_ms, received_ms, properties, agent, pid, transport,"
    " consent, upload, anonymous_id, daemon_version, trace_id, span_id, parent_span_id)"
    " VALUES (?, ?, ?, ?, ?, ?, 4242, 'unix', 'local', ?, 'anon', 'bench', ?, ?, ?)"
)
MODELS = ("gpt-4o", "gpt-4o-mini", "claude-sonnet-4-5", "claude-haiku-4-5", "gemini-2.5-pro")
UNKNOWN_MODEL = "house-model"
TOOLS = tuple(f"tool-{i}" for i in range(12))
RUN_EVERY = 100  # one run of RUN_SPANS spans starts every RUN_EVERY events
RUN_SPANS = 10


def _llm(rng: random.Random, props: dict[str, Any]) -> None:
    model = UNKNOWN_MODEL if rng.random() < 0.05 else rng.choice(MODELS)
    props["gen_ai.request.model"] = model
    props["gen_ai.usage.input_tokens"] = rng.randint(100, 20_000)
    props["gen_ai.usage.output_tokens"] = rng.randint(10, 2_000)
    if rng.random() < 0.3:
        props["gen_ai.usage.cache_read.input_tokens"] = rng.randint(0, 5_000)
    if rng.random() < 0.3:
        props["cost_usd"] = round(rng.random() / 20, 5)
    props["duration_ms"] = int(rng.lognormvariate(7, 0.8))


def _tool(rng: random.Random, props: dict[str, Any]) -> None:
    props["gen_ai.tool.name"] = rng.choice(TOOLS)
    props["duration_ms"] = int(rng.lognormvariate(4, 1.2))
    if rng.random() < 0.05:
        props["status"] = "error"


def _span(i: int, rng: random.Random, props: dict[str, Any]) -> tuple[str, Any, Any, Any]:
    """(event name, trace, span, parent) of the event at `i` when it is a span."""
    run, place = divmod(i, RUN_EVERY)
    trace = f"{run:032x}"
    root = f"{run:012x}0000"
    if place == RUN_SPANS - 1:  # the root arrives after its spans
        props["duration_ms"] = 60_000
        return "agent.run", trace, root, None
    span_id = f"{run:012x}{place + 1:04x}"
    if place < 4:
        _llm(rng, props)
        return "llm.call", trace, span_id, root
    _tool(rng, props)
    parent = root if place < 7 else f"{run:012x}{place:04x}"  # some nested under a tool
    return "tool.call", trace, span_id, parent


def seed(path: Path, events: int, now_ms: int, first_id: int = 0) -> None:
    """Create the buffer and write `events` events into it."""
    conn = open_buffer(path)
    try:
        seed_into(conn, events, now_ms, first_id)
    finally:
        conn.close()


def seed_into(conn: sqlite3.Connection, events: int, now_ms: int, first_id: int = 0) -> None:
    # Later events go through a connection already open: opening the buffer again would
    # move aside the WAL these plain connections wrote, which is no WAL the daemon recorded.
    rng = random.Random(7 + first_id)
    agents = [f"agent-{i}" for i in range(8)]
    names = [f"tool.call.{i}" for i in range(36)] + [
        "agent.run.completed",
        "agent.run.failed",
        "llm.error",
        "llm.request",
    ]
    span = 30 * DAY_MS
    step = span / max(events, 1)
    batch: list[tuple[Any, ...]] = []
    cumulative = 0
    for i in range(first_id, first_id + events):
        received = now_ms - span + int((i - first_id) * step)
        props: dict[str, Any] = {"step": i % 17}
        name = rng.choice(names)
        trace = span_id = parent = None
        roll = rng.random()
        if i % RUN_EVERY < RUN_SPANS:
            name, trace, span_id, parent = _span(i, rng, props)
        elif roll < 0.2:
            _llm(rng, props)
            name = "llm.request"
        elif roll < 0.35:
            _tool(rng, props)
            name = "tool.call"
        elif roll < 0.37:
            cumulative += rng.randint(1, 1000)
            props = {"metric.type": "sum", "metric.temporality": "cumulative",
                     "metric.value": cumulative, "type": "input"}  # fmt: skip
            name = "gen_ai.client.token.usage"
        elif rng.random() < 0.4:
            props["duration_ms"] = int(rng.lognormvariate(6, 1))
        if rng.random() < 0.02:
            props["status"] = "error"
        upload = "sent" if i % 3 == 0 else "local"
        batch.append(
            (
                f"{i:032x}",
                name,
                received,
                received,
                orjson.dumps(props).decode(),
                rng.choice(agents),
                upload,
                trace,
                span_id,
                parent,
            )
        )
        if len(batch) == 50_000:
            _insert(conn, batch)
            batch = []
    if batch:
        _insert(conn, batch)


def _insert(conn: sqlite3.Connection, rows: list[tuple[Any, ...]]) -> None:
    conn.execute("BEGIN")
    conn.executemany(INSERT, rows)
    conn.execute("COMMIT")


def timed(fn: Callable[[], Any], repeat: int) -> float:
    """Median seconds of `repeat` calls."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def endpoint_ms(conn: sqlite3.Connection, name: str, f: Filters, repeat: int) -> float:
    return 1000 * timed(lambda: orjson.dumps(ENDPOINTS[name](conn, f)), repeat)


def agent_endpoint_ms(conn: sqlite3.Connection, name: str, f: Filters, repeat: int) -> float:
    query = AgentQuery(f, price_book())
    if name == "run":  # one run's waterfall, from the middle of the buffer
        trace = conn.execute(
            "SELECT trace_id FROM agent_runs ORDER BY start_ms LIMIT 1 OFFSET"
            " (SELECT count(*) / 2 FROM agent_runs)"
        ).fetchone()
        trace_id = trace[0] if trace else "0" * 32
        return 1000 * timed(lambda: orjson.dumps(run_view(conn, trace_id)), repeat)
    return 1000 * timed(lambda: orjson.dumps(AGENT_ENDPOINTS[name](conn, query)), repeat)


AGENT_VIEWS = (*AGENT_ENDPOINTS, "run")


def fold_cost(writer: sqlite3.Connection, events: int) -> dict[str, float]:
    """The agent analytics' fold of every event: total, per event, and per writer job (a
    chunk of FOLD_CHUNK events in one transaction, what ingest may wait behind)."""
    chunks: list[float] = []
    while True:
        start = time.perf_counter()
        writer.execute("BEGIN IMMEDIATE")
        done = analytics_fold.fold(writer)
        writer.execute("COMMIT")
        if done == 0:
            break
        chunks.append(time.perf_counter() - start)
    total = sum(chunks)
    return {
        "agent_fold_all_s": round(total, 2),
        "agent_fold_us_per_event": round(total / max(events, 1) * 1e6, 2),
        "agent_fold_chunk_ms": round(1000 * statistics.median(chunks), 1) if chunks else 0.0,
    }


def vocabulary_us(repeat: int = 100_000) -> dict[str, float]:
    """The ingest transform per event: with short forms to rename, and with none."""
    vocabulary = Vocabulary()
    typed = {"model": "gpt-4o", "tokens_in": 1200, "tokens_out": 85, "duration_ms": 812, "s": 3}
    plain = {"path": "/", "status": "ok", "duration_ms": 812, "step": 3, "count": 2}
    found = {}
    for label, props in (("vocabulary_renaming_us", typed), ("vocabulary_nothing_us", plain)):
        event = Event("llm.call", props, None, None, "a")
        start = time.perf_counter()
        for _ in range(repeat):
            vocabulary(event)
        found[label] = round((time.perf_counter() - start) / repeat * 1e6, 3)
    return found


def run(quick: bool = False) -> dict[str, Any]:
    events = 2_000 if quick else 1_000_000
    tail = 50 if quick else 2_000
    repeat = 1 if quick else 3
    now_ms = int(time.time() * 1000)
    with tempfile.TemporaryDirectory(prefix="dash-bench-") as tmp:
        path = Path(tmp) / "buffer.sqlite3"
        start = time.perf_counter()
        seed(path, events, now_ms)
        seed_s = time.perf_counter() - start
        reader = connect(path, readonly=True)
        week = Filters(since_ms=now_ms - 7 * DAY_MS)
        cold_all_ms = endpoint_ms(reader, "all", Filters(), 1)

        cold_models_ms = agent_endpoint_ms(reader, "models", week, 1)

        writer = open_buffer(path)
        fold_s = timed(lambda: fold_all(writer), 1)
        rollup_rows = writer.execute(
            "SELECT (SELECT count(*) FROM dash_hourly) + (SELECT count(*) FROM dash_durations)"
            " + (SELECT count(*) FROM dash_duration_hours)"
        ).fetchone()[0]
        agent_fold = fold_cost(writer, events)
        agent_rows = writer.execute(
            "SELECT (SELECT count(*) FROM agent_facts), (SELECT count(*) FROM agent_models)"
            " + (SELECT count(*) FROM agent_tools) + (SELECT count(*) FROM agent_durations)"
            " + (SELECT count(*) FROM agent_runs) + (SELECT count(*) FROM agent_run_models)"
            " + (SELECT count(*) FROM agent_metric_hours), (SELECT count(*) FROM agent_runs),"
            " (SELECT sum(spans) FROM agent_runs)"
        ).fetchone()
        scan_ms = 1000 * timed(
            lambda: reader.execute("SELECT count(*) FROM events").fetchone(), repeat
        )
        results: dict[str, dict[str, float]] = {}
        for name in ENDPOINTS:
            results[name] = {
                "all_time_ms": endpoint_ms(reader, name, Filters(), repeat),
                "last_7d_ms": endpoint_ms(reader, name, week, repeat),
                "one_agent_ms": endpoint_ms(reader, name, Filters(agent="agent-3"), repeat),
            }
        agent_results: dict[str, dict[str, float]] = {}
        for name in AGENT_VIEWS:
            agent_results[name] = {
                "all_time_ms": agent_endpoint_ms(reader, name, Filters(), repeat),
                "last_7d_ms": agent_endpoint_ms(reader, name, week, repeat),
                "one_agent_ms": agent_endpoint_ms(reader, name, Filters(agent="agent-3"), repeat),
            }
        seed_into(writer, tail, now_ms, first_id=events)
        for name in ENDPOINTS:
            results[name]["with_tail_ms"] = endpoint_ms(reader, name, Filters(), repeat)
        for name in AGENT_VIEWS:
            agent_results[name]["with_tail_ms"] = agent_endpoint_ms(reader, name, week, repeat)
        writer.close()
        reader.close()
    report = {
        "events": events,
        "unfolded_tail": tail,
        "seed_s": round(seed_s, 2),
        "fold_all_s": round(fold_s, 2),
        "rollup_rows": rollup_rows,
        "count_star_ms": round(scan_ms, 1),
        "cold_all_ms": round(cold_all_ms, 1),
        "cold_models_7d_ms": round(cold_models_ms, 1),
        "endpoints": {k: {m: round(v, 1) for m, v in r.items()} for k, r in results.items()},
        "agent_facts": agent_rows[0],
        "agent_rollup_rows": agent_rows[1],
        "runs": agent_rows[2],
        "spans": agent_rows[3] or 0,
        **agent_fold,
        **vocabulary_us(1_000 if quick else 100_000),
        "agent_endpoints": {
            k: {m: round(v, 1) for m, v in r.items()} for k, r in agent_results.items()
        },
    }
    print_table(report)
    return report


def print_table(report: dict[str, Any]) -> None:
    out = sys.stdout
    out.write(
        f"\ndashboard endpoints, {report['events']:,} events"
        f" (seed {report['seed_s']} s; one-off fold {report['fold_all_s']} s"
        f" into {report['rollup_rows']:,} rollup rows; anchor: SELECT count(*) FROM events"
        f" {report['count_star_ms']} ms)\n\n"
    )
    columns = ("all_time_ms", "last_7d_ms", "one_agent_ms", "with_tail_ms")
    heads = ("all time", "last 7 d", "one agent", f"+{report['unfolded_tail']:,} unfolded")
    out.write(f"{'endpoint':<12}" + "".join(f"{h:>18}" for h in heads) + "\n")
    for name, row in report["endpoints"].items():
        out.write(f"{name:<12}" + "".join(f"{row[c]:>15.1f} ms" for c in columns) + "\n")
    out.write(
        f"\nnothing folded yet (first request after an upgrade), `all`: "
        f"{report['cold_all_ms']:.0f} ms\n"
    )
    out.write(
        f"\nagent analytics: {report['runs']:,} runs, {report['spans']:,} spans;"
        f" fold {report['agent_fold_all_s']} s ({report['agent_fold_us_per_event']} µs an"
        f" event, {report['agent_fold_chunk_ms']} ms a writer job) into"
        f" {report['agent_facts']:,} facts and {report['agent_rollup_rows']:,} rollup rows;"
        f" nothing folded, models over 7 d: {report['cold_models_7d_ms']:.0f} ms\n"
        f"vocabulary at ingest: {report['vocabulary_renaming_us']} µs an event renaming,"
        f" {report['vocabulary_nothing_us']} µs with nothing to rename\n\n"
    )
    heads = ("all time", "last 7 d", "one agent", "7 d +unfolded")
    out.write(f"{'endpoint':<12}" + "".join(f"{h:>18}" for h in heads) + "\n")
    for name, row in report["agent_endpoints"].items():
        out.write(f"{name:<12}" + "".join(f"{row[c]:>15.1f} ms" for c in columns) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes")
    run(parser.parse_args().quick)


if __name__ == "__main__":
    main()
