"""Agent overhead: what `track()` costs the calling thread, against posthog's `capture()`.

Each case runs in a fresh interpreter (`python -m bench.overhead CASE CALLS SOCKET`) so
that one client's queue and threads cannot colour the next case. Every call is timed on
its own with `perf_counter_ns`; the figure includes the ~50 ns the two clock reads cost,
for both sides alike.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from bench import fixtures
from bench.report import Row, median, percentile

SECTION = "agent overhead"
UNREACHABLE = "http://127.0.0.1:9"  # the discard port: nothing listens on loopback


def _time_calls(call: object, calls: int) -> list[int]:
    clock = time.perf_counter_ns
    samples = [0] * calls
    props = fixtures.properties(7)
    for i in range(calls):
        start = clock()
        call("agent.run.completed", props)  # type: ignore[operator]
        samples[i] = clock() - start
    return samples


def _worker(case: str, calls: int, socket_path: str) -> dict[str, float]:
    if case == "posthog":
        from posthog import Posthog

        # Queue-only: the host is unreachable and the queue is big enough to take every
        # call, so capture() never takes its cheap "queue full, drop" path.
        client = Posthog(
            "phc_bench",
            host=UNREACHABLE,
            max_queue_size=calls * 2,
            max_retries=0,
            enable_local_evaluation=False,
        )

        def call(event: str, props: dict[str, object]) -> None:
            client.capture(event, distinct_id="bench-user", properties=props)
    else:
        from agent_telemetry._client import Client

        shim = Client()
        shim.configure(socket_path=socket_path, agent="bench")
        call = shim.track  # type: ignore[assignment]
    _time_calls(call, min(calls, 2_000))  # warm-up: first connect, thread start, caches
    samples = sorted(_time_calls(call, calls))
    return {
        q: percentile(samples, p) / 1000 for q, p in (("median", 50), ("p99", 99), ("p99.9", 99.9))
    }


def _case(case: str, calls: int, socket_path: str) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, "-m", "bench.overhead", case, str(calls), socket_path],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
        cwd=Path(__file__).resolve().parent.parent,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def run(quick: bool) -> list[Row]:
    calls = 10_000 if quick else 100_000
    reps = 1 if quick else 3
    results: dict[str, list[dict[str, float]]] = {}
    with fixtures.daemon() as proc:
        assert proc.proc is not None
        sock = str(proc.ingest_socket)
        missing = str(proc.home / "run" / "nobody.sock")
        for _ in range(reps):
            results.setdefault("posthog", []).append(_case("posthog", calls, sock))
            results.setdefault("up", []).append(_case("up", calls, sock))
            results.setdefault("down", []).append(_case("down", calls, missing))
            os.kill(proc.proc.pid, signal.SIGSTOP)
            try:
                results.setdefault("stopped", []).append(_case("stopped", calls, sock))
            finally:
                os.kill(proc.proc.pid, signal.SIGCONT)
    summary = {
        case: {q: median(r[q] for r in runs) for q in runs[0]} for case, runs in results.items()
    }
    anchor = summary["posthog"]
    rows = [
        Row(
            SECTION,
            f"posthog capture() {q} (host unreachable)",
            anchor[q],
            "µs",
            note=f"{calls:,} calls a case, median of {reps} runs" if q == "median" else "",
        )
        for q in ("median", "p99", "p99.9")
    ]
    labels = {"up": "daemon up", "down": "daemon down", "stopped": "daemon SIGSTOPped"}
    for case, label in labels.items():
        figures = summary[case]
        rows.append(
            Row(
                SECTION,
                f"track() median, {label}",
                figures["median"],
                "µs",
                "capture() median",
                anchor["median"],
                anchor["median"] / figures["median"],
                "< 3 µs and >= 15x cheaper",
                figures["median"] < 3 and anchor["median"] / figures["median"] >= 15,
            )
        )
        rows.append(
            Row(
                SECTION,
                f"track() p99, {label}",
                figures["p99"],
                "µs",
                "capture() p99",
                anchor["p99"],
                anchor["p99"] / figures["p99"],
            )
        )
        rows.append(
            Row(
                SECTION,
                f"track() p99.9, {label}",
                figures["p99.9"],
                "µs",
                "capture() p99.9",
                anchor["p99.9"],
                anchor["p99.9"] / figures["p99.9"],
                "< 1000 µs",
                figures["p99.9"] < 1000,
            )
        )
    return rows


if __name__ == "__main__":
    print(json.dumps(_worker(sys.argv[1], int(sys.argv[2]), sys.argv[3])))
