"""Each dashboard endpoint's time with a million events in the buffer.

    .venv/bin/python -m bench.dashboard_queries            # 1,000,000 events
    .venv/bin/python -m bench.dashboard_queries --quick    # tiny: checks the code only

The buffer is seeded with plain sqlite3 `executemany` (30 days, 8 agents, 40 event
names, 40% with a duration, ~4% errors), then: the one-off fold of every event into
the rollups, each endpoint with the rollups current (all time, last 7 days, one
agent), each again with 2,000 events not yet folded (what a request sees between
background folds), and the worst case — nothing folded at all, as right after an
upgrade — for `all`. Each figure is the median of a few runs; the endpoint's work is
its SQL plus encoding the JSON answer, as the daemon's handler does.
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

from agent_telemetryd.dashboard.filters import Filters
from agent_telemetryd.dashboard.views import ENDPOINTS
from agent_telemetryd.store.dashboard_sql import fold_all
from agent_telemetryd.store.database import connect, open_buffer

DAY_MS = 86_400_000
INSERT = (
    "INSERT INTO events (uuid, event, ts_ms, received_ms, properties, agent, pid, transport,"
    " consent, upload, anonymous_id, daemon_version)"
    " VALUES (?, ?, ?, ?, ?, ?, 4242, 'unix', 'local', ?, 'anon', 'bench')"
)


def seed(path: Path, events: int, now_ms: int, first_id: int = 0) -> None:
    rng = random.Random(7 + first_id)
    agents = [f"agent-{i}" for i in range(8)]
    names = [f"tool.call.{i}" for i in range(36)] + [
        "agent.run.completed",
        "agent.run.failed",
        "llm.error",
        "llm.request",
    ]
    span = 30 * DAY_MS
    conn = open_buffer(path)
    try:
        step = span / max(events, 1)
        batch: list[tuple[Any, ...]] = []
        for i in range(first_id, first_id + events):
            received = now_ms - span + int((i - first_id) * step)
            props: dict[str, Any] = {"model": "m", "step": i % 17}
            if rng.random() < 0.4:
                props["duration_ms"] = int(rng.lognormvariate(6, 1))
            if rng.random() < 0.02:
                props["status"] = "error"
            upload = "sent" if i % 3 == 0 else "local"
            batch.append(
                (
                    f"{i:032x}",
                    rng.choice(names),
                    received,
                    received,
                    orjson.dumps(props).decode(),
                    rng.choice(agents),
                    upload,
                )
            )
            if len(batch) == 50_000:
                _insert(conn, batch)
                batch = []
        if batch:
            _insert(conn, batch)
    finally:
        conn.close()


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

        writer = open_buffer(path)
        fold_s = timed(lambda: fold_all(writer), 1)
        rollup_rows = writer.execute(
            "SELECT (SELECT count(*) FROM dash_hourly) + (SELECT count(*) FROM dash_durations)"
            " + (SELECT count(*) FROM dash_duration_hours)"
        ).fetchone()[0]
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
        seed(path, tail, now_ms, first_id=events)
        for name in ENDPOINTS:
            results[name]["with_tail_ms"] = endpoint_ms(reader, name, Filters(), repeat)
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
        "endpoints": {k: {m: round(v, 1) for m, v in r.items()} for k, r in results.items()},
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes")
    run(parser.parse_args().quick)


if __name__ == "__main__":
    main()
