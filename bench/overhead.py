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
EXIT_CALLS = 10_000
# An agent that tracks and ends: its exit flush is what the user waits for at the end.
_EXIT_AGENT = f"""
import sys
from agent_telemetry import configure, track
configure(socket_path=sys.argv[1], agent="bench")
for i in range({EXIT_CALLS}):
    track("agent.step", {{"i": i}})
"""
_IDLE_AGENT = "import sys, agent_telemetry"
# What each daemon state may add to the agent's run: none when nobody listens, the 0.5 s
# a stalled daemon is given, the ≤ 2 s a reading daemon is given to take the backlog.
_EXIT_BUDGET_MS = {"down": 100.0, "stopped": 600.0, "up": 2000.0}


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


def _run_to_exit_ms(code: str, socket_path: str) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code, socket_path], check=True, timeout=60)
    return (time.perf_counter() - start) * 1000


def run(quick: bool) -> list[Row]:
    calls = 10_000 if quick else 100_000
    reps = 1 if quick else 3
    exit_reps = 1 if quick else 5
    results: dict[str, list[dict[str, float]]] = {}
    exits: dict[str, list[float]] = {}
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
        for _ in range(exit_reps):
            exits.setdefault("idle", []).append(_run_to_exit_ms(_IDLE_AGENT, sock))
            exits.setdefault("up", []).append(_run_to_exit_ms(_EXIT_AGENT, sock))
            exits.setdefault("down", []).append(_run_to_exit_ms(_EXIT_AGENT, missing))
            os.kill(proc.proc.pid, signal.SIGSTOP)
            try:
                exits.setdefault("stopped", []).append(_run_to_exit_ms(_EXIT_AGENT, sock))
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
    idle_ms = median(exits["idle"])
    for case, label in labels.items():
        run_ms = median(exits[case])
        budget = _EXIT_BUDGET_MS[case]
        rows.append(
            Row(
                SECTION,
                f"agent run to exit, {EXIT_CALLS:,} track(), {label}",
                run_ms,
                "ms",
                "agent, no track()",
                idle_ms,
                run_ms / idle_ms,
                f"< +{budget:,.0f} ms",
                run_ms - idle_ms < budget,
                note=f"a fresh interpreter each run, median of {exit_reps}" if case == "up" else "",
            )
        )
    return rows


if __name__ == "__main__":
    print(json.dumps(_worker(sys.argv[1], int(sys.argv[2]), sys.argv[3])))
