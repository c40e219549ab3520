"""Agent overhead: what `track()` and `span()` cost the calling thread, against posthog's
`capture()`, and what an agent's exit costs with the daemon up, down or stopped.

Each case runs in a fresh interpreter (`python -m bench.overhead CASE CALLS SOCKET SPOOL`)
so that one client's queue and threads cannot colour the next case. Every call is timed on
its own with `perf_counter_ns`; the figure includes the ~50 ns the two clock reads cost,
for both sides alike. Spool files go to a temporary folder, never the user's data dir.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import fixtures
from bench.report import Row, median, percentile
from tests.daemon_process import DaemonProcess

SECTION = "agent overhead"
UNREACHABLE = "http://127.0.0.1:9"  # the discard port: nothing listens on loopback
EXIT_CALLS = 10_000
SPOOL_CALLS = 50_000
# An agent that tracks and ends: its exit flush is what the user waits for at the end.
_EXIT_AGENT = """
import sys
from agent_telemetry import configure, track
configure(socket_path=sys.argv[1], agent="bench", spool_dir=sys.argv[2])
for i in range(int(sys.argv[3])):
    track("agent.step", {"i": i})
"""
_IDLE_AGENT = "import sys, agent_telemetry"
# The first track() of a process also starts the writer thread (none is started at import).
_FIRST_CALL_AGENT = """
import sys, time
from agent_telemetry import configure, track
configure(socket_path=sys.argv[1], agent="bench", spool_dir=sys.argv[2])
start = time.perf_counter_ns()
track("agent.step", {"i": 0})
print((time.perf_counter_ns() - start) / 1000)
"""
FIRST_CALL_RUNS = 20
# What each daemon state may add to the agent's run, as the shim stood before it spooled:
# none when nobody listens (the events were lost), the 0.5 s a stalled daemon is given
# (the rest was lost), the ≤ 2 s a reading daemon is given to take the backlog.
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


def _worker(case: str, calls: int, socket_path: str, spool: str) -> dict[str, float]:
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
        from agent_telemetry._span import make_span

        shim = Client()
        shim.configure(socket_path=socket_path, agent="bench", spool_dir=spool)
        call = shim.track  # type: ignore[assignment]
        if case.startswith("span"):
            span = make_span(shim)

            def call(event: str, props: dict[str, object]) -> None:
                with span(event, props):
                    pass

    _time_calls(call, min(calls, 2_000))  # warm-up: first connect, thread start, caches
    samples = sorted(_time_calls(call, calls))
    return {
        q: percentile(samples, p) / 1000 for q, p in (("median", 50), ("p99", 99), ("p99.9", 99.9))
    }


def _case(case: str, calls: int, socket_path: str, spool: str) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, "-m", "bench.overhead", case, str(calls), socket_path, spool],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
        cwd=Path(__file__).resolve().parent.parent,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def _run_to_exit_ms(code: str, socket_path: str, spool: str, calls: int = EXIT_CALLS) -> float:
    return fixtures.run_ms([sys.executable, "-c", code, socket_path, spool, str(calls)], timeout=60)


def _first_call_us(socket_path: str, spool: str) -> float:
    out = subprocess.run(
        [sys.executable, "-c", _FIRST_CALL_AGENT, socket_path, spool],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return float(out.stdout.strip().splitlines()[-1])


def _spooled(spool: Path) -> tuple[int, int]:
    """Event lines in sealed spool files, and the losses their drop-count lines report."""
    events = reported = 0
    for path in spool.glob("*.ndjson"):
        with path.open("rb") as lines:
            for line in lines:
                if line.startswith(b'{"client_drops"'):
                    reported += sum(json.loads(line)["client_drops"].values())
                else:
                    events += 1
    return events, reported


def _stored(proc: DaemonProcess) -> int:
    return int(proc.status()["buffer"]["events"])


def _wait_accounted(
    proc: DaemonProcess, before: tuple[int, int], expected: int, timeout: float = 30.0
) -> tuple[int, int]:
    """Events stored and losses reported since `before`, once they add up to `expected`."""
    deadline = time.monotonic() + timeout
    while True:
        taken, lost = _stored(proc) - before[0], fixtures.client_drops(proc) - before[1]
        if taken + lost >= expected or time.monotonic() > deadline:
            return taken, lost
        time.sleep(0.1)


def _spool_exit(proc: DaemonProcess, socket_path: str, stop: bool) -> dict[str, float]:
    """One agent tracking SPOOL_CALLS and exiting: wall and CPU time, and where events went.

    `stop`: the daemon is SIGSTOPped while the agent runs (what it took before it stopped
    is counted once it runs again); else nobody listens on `socket_path`.
    """
    spool = Path(tempfile.mkdtemp(prefix="at-spool-", dir="/tmp"))
    assert proc.proc is not None
    try:
        before = (_stored(proc), fixtures.client_drops(proc))
        cpu = fixtures.children_cpu_ms()
        if stop:
            os.kill(proc.proc.pid, signal.SIGSTOP)
        try:
            wall = _run_to_exit_ms(_EXIT_AGENT, socket_path, str(spool), SPOOL_CALLS)
        finally:
            if stop:
                os.kill(proc.proc.pid, signal.SIGCONT)
        cpu = fixtures.children_cpu_ms() - cpu
        spooled, reported = _spooled(spool)
        taken = told = 0
        if stop:
            # What the stopped daemon took from the socket, and the losses the shim
            # reported over it (its backlog outrun), are counted once it runs again.
            taken, told = _wait_accounted(proc, before, SPOOL_CALLS - spooled - reported)
        return {
            "wall": wall,
            "cpu": cpu,
            "spooled": spooled,
            "taken": taken,
            "lost": reported + told,
        }
    finally:
        shutil.rmtree(spool, ignore_errors=True)


def run(quick: bool) -> list[Row]:
    calls = 10_000 if quick else 100_000
    reps = 1 if quick else 3
    exit_reps = 1 if quick else 5
    results: dict[str, list[dict[str, float]]] = {}
    exits: dict[str, list[float]] = {}
    spool_exits: dict[str, list[dict[str, float]]] = {}
    scratch = Path(tempfile.mkdtemp(prefix="at-bench-", dir="/tmp"))
    with fixtures.daemon() as proc:
        assert proc.proc is not None
        sock = str(proc.ingest_socket)
        missing = str(proc.home / "run" / "nobody.sock")

        def case(name: str, socket_path: str) -> None:
            spool = str(scratch / f"{name}-{len(results.get(name, []))}")
            results.setdefault(name, []).append(_case(name, calls, socket_path, spool))

        def run_to_exit(name: str, code: str, socket_path: str) -> None:
            spool = str(scratch / f"exit-{name}-{len(exits.get(name, []))}")
            exits.setdefault(name, []).append(_run_to_exit_ms(code, socket_path, spool))

        for _ in range(reps):
            case("posthog", sock)
            case("up", sock)
            case("down", missing)
            case("span-down", missing)
            os.kill(proc.proc.pid, signal.SIGSTOP)
            try:
                case("stopped", sock)
            finally:
                os.kill(proc.proc.pid, signal.SIGCONT)
        for _ in range(exit_reps):
            run_to_exit("idle", _IDLE_AGENT, sock)
            run_to_exit("up", _EXIT_AGENT, sock)
            run_to_exit("down", _EXIT_AGENT, missing)
            os.kill(proc.proc.pid, signal.SIGSTOP)
            try:
                run_to_exit("stopped", _EXIT_AGENT, sock)
            finally:
                os.kill(proc.proc.pid, signal.SIGCONT)
            spool_exits.setdefault("down", []).append(_spool_exit(proc, missing, stop=False))
            spool_exits.setdefault("stopped", []).append(_spool_exit(proc, sock, stop=True))
        first_calls = [
            _first_call_us(sock, str(scratch / f"first-{i}")) for i in range(FIRST_CALL_RUNS)
        ]
    shutil.rmtree(scratch, ignore_errors=True)
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
    for name, label in labels.items():
        figures = summary[name]
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
    rows += _span_rows(summary)
    idle_ms = median(exits["idle"])
    for name, label in labels.items():
        run_ms = median(exits[name])
        budget = _EXIT_BUDGET_MS[name]
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
                note=f"a fresh interpreter each run, median of {exit_reps}" if name == "up" else "",
            )
        )
    rows += _spool_rows(spool_exits, idle_ms, exit_reps)
    rows.append(
        Row(
            SECTION,
            "first track() of a process (starts the writer thread), median",
            median(first_calls),
            "µs",
            note=f"a fresh interpreter each run, {FIRST_CALL_RUNS} runs; p90 "
            f"{percentile(sorted(first_calls), 90):,.0f} µs",
        )
    )
    return rows


def _span_rows(summary: dict[str, dict[str, float]]) -> list[Row]:
    span, track = summary["span-down"], summary["down"]
    rows = []
    for q, target in (("median", "< 3 µs"), ("p99", ""), ("p99.9", "< 1000 µs")):
        limit = 3 if q == "median" else 1000
        rows.append(
            Row(
                SECTION,
                f"span() enter+exit {q}, daemon down",
                span[q],
                "µs",
                f"track() {q}, daemon down",
                track[q],
                span[q] / track[q],
                target,
                span[q] < limit if target else None,
                note="one event per span, as track()" if q == "median" else "",
            )
        )
    return rows


def _spool_rows(
    spool_exits: dict[str, list[dict[str, float]]], idle_ms: float, reps: int
) -> list[Row]:
    rows = []
    labels = {"down": "no daemon", "stopped": "daemon SIGSTOPped"}
    for name, label in labels.items():
        runs = spool_exits[name]
        wall = median(r["wall"] for r in runs)
        cpu = median(r["cpu"] for r in runs)
        budget = _EXIT_BUDGET_MS[name]
        rows.append(
            Row(
                SECTION,
                f"agent run to exit, {SPOOL_CALLS:,} track(), {label}",
                wall,
                "ms",
                "agent, no track()",
                idle_ms,
                wall / idle_ms,
                f"< +{budget:,.0f} ms (before spooling)",
                wall - idle_ms < budget,
                note=f"agent CPU {cpu:,.0f} ms; median of {reps}",
            )
        )
        recovered = median(r["spooled"] + r["taken"] for r in runs)
        rows.append(
            Row(
                SECTION,
                f"events kept of {SPOOL_CALLS:,}, {label} at exit",
                recovered,
                "events",
                target=f"= {SPOOL_CALLS:,}",
                met=all(r["spooled"] + r["taken"] == SPOOL_CALLS for r in runs),
                note="in spool files "
                + ", ".join(f"{r['spooled']:,.0f}" for r in runs)
                + (
                    "; stored from the socket after SIGCONT "
                    + ", ".join(f"{r['taken']:,.0f}" for r in runs)
                    if name == "stopped"
                    else ""
                ),
            )
        )
        rows.append(
            Row(
                SECTION,
                f"events kept or reported lost of {SPOOL_CALLS:,}, {label} at exit",
                median(r["spooled"] + r["taken"] + r["lost"] for r in runs),
                "events",
                target=f"= {SPOOL_CALLS:,}",
                met=all(r["spooled"] + r["taken"] + r["lost"] == SPOOL_CALLS for r in runs),
                note="reported lost (client_* drops, in the spool or in status) "
                + ", ".join(f"{r['lost']:,.0f}" for r in runs),
            )
        )
    return rows


if __name__ == "__main__":
    print(json.dumps(_worker(sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4])))
