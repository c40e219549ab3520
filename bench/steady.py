"""Steady load: what a moderate, constant rate of events costs the daemon.

Four agent processes call the real shim's `track()` at an even pace (10,000, 1,000 and
100 events/s in all) for a fixed time, each event carrying the wall-clock time of its
`track()` call (`sent_ns`). Measured on the daemon: CPU time over the window as a share
of one core, its peak RSS (`VmHWM`), its wake-ups (every thread's voluntary context
switches), and send -> commit latency — the bench polls the buffer (read-only, every
POLL_SECONDS) for rows it has not seen and takes the moment it saw each one as its
commit time, so each figure is at most one poll late.

The anchor is an asyncio server that only receives the same stream over the same kind
of socket from the same four agents and counts newlines: what taking the bytes off the
sockets costs on the same event loop, before anything is done with them.
"""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
from operator import sub
from pathlib import Path
from typing import Any

from agent_telemetryd.receivers.read_turns import READ_INTERVAL
from agent_telemetryd.store.database import open_buffer
from agent_telemetryd.store.writer import INSERT_EVENT
from bench import fixtures
from bench.idle import sample
from bench.report import Row, percentile

SECTION = "steady"
PRODUCERS = 4
TICK_SECONDS = 0.001  # the agents' pacing step: events due by now are tracked each tick
POLL_SECONDS = 0.005
SETTLE_SECONDS = 0.2  # after the agents start, before the window opens


def _agent(socket_path: str, rate: float, seconds: float, index: int, go: Any, ready: Any) -> None:
    """One agent: `rate` events/s through the real shim, evenly paced, then flushed."""
    import agent_telemetry

    agent_telemetry.configure(agent=f"steady-{index}", socket_path=socket_path)
    track = agent_telemetry.track
    ready.release()
    go.wait()
    start = time.monotonic()
    sent = 0
    total = int(rate * seconds)
    while sent < total:
        due = min(total, int((time.monotonic() - start) * rate) + 1)
        while sent < due:
            track(
                "tool.call",
                {
                    "sent_ns": time.time_ns(),
                    "duration_ms": sent % 997,
                    "model": "model-1",
                    "tokens_in": sent % 4096,
                    "status": "ok",
                    "tool": "search",
                },
            )
            sent += 1
        time.sleep(TICK_SECONDS)
    agent_telemetry.flush(timeout=30)


def _start_agents(socket_path: Path, rate: float, seconds: float) -> tuple[list[Any], Any]:
    ctx = multiprocessing.get_context("fork")
    go, ready = ctx.Event(), ctx.Semaphore(0)
    per = rate / PRODUCERS
    agents = [
        ctx.Process(target=_agent, args=(str(socket_path), per, seconds, i, go, ready))
        for i in range(PRODUCERS)
    ]
    for agent in agents:
        agent.start()
    for _ in agents:
        if not ready.acquire(timeout=60):
            raise TimeoutError("an agent process did not start")
    return agents, go


def _cpu_seconds(pid: int) -> float:
    return sample(pid)["cpu_s"]


def loop_thread_seconds(pid: int) -> tuple[float, float]:
    """CPU seconds of the daemon's main thread, the one its event loop runs on, in all and
    in the kernel (reading sockets, epoll): the rest of its CPU is its other threads'
    (the buffer's writer and checkpointer, mostly)."""
    stat = Path(f"/proc/{pid}/task/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return (int(stat[11]) + int(stat[12])) / tick, int(stat[12]) / tick


def _counts(pid: int) -> tuple[float, float, float, float]:
    """The daemon's CPU seconds, wake-ups (every thread's voluntary context switches), and
    its event loop's thread's CPU seconds in all and in the kernel: one reading of each."""
    figures = sample(pid)
    return (figures["cpu_s"], figures["woken"], *loop_thread_seconds(pid))


def _peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def daemon_run(rate: float, seconds: float, profile: Path | None = None) -> dict[str, Any]:
    """A fresh daemon under `rate` events/s for `seconds`: CPU share, peak RSS, latencies.
    With `profile`, py-spy records the daemon over the window (collapsed stacks there)."""
    with fixtures.daemon({"AGENT_TELEMETRY_HTTP_PORT": "off"}) as proc:
        return window_run(proc, rate, seconds, profile)


def window_run(
    proc: fixtures.DaemonProcess, rate: float, seconds: float, profile: Path | None = None
) -> dict[str, Any]:
    """`rate` events/s for `seconds` into a running daemon; its peak RSS is since its start."""
    assert proc.proc is not None
    pid = proc.proc.pid
    agents, go = _start_agents(proc.ingest_socket, rate, seconds)
    time.sleep(SETTLE_SECONDS)
    expected = int(rate / PRODUCERS * seconds) * PRODUCERS
    conn = fixtures.read_only(proc.database)
    latencies: list[float] = []
    to_receipt: list[float] = []  # track() -> the daemon's receipt stamp, the read half
    seen = 0
    last_id = conn.execute("SELECT coalesce(max(id), 0) FROM events").fetchone()[0]
    start, wall_start = _counts(pid), time.monotonic()
    go.set()
    spy = _py_spy(pid, seconds, profile) if profile is not None else None
    sending_until = wall_start + seconds
    window: list[float] | None = None  # what _counts gave over the window
    deadline = sending_until + 60
    while seen < expected and time.monotonic() < deadline:
        time.sleep(POLL_SECONDS)
        rows = conn.execute(
            "SELECT id, json_extract(properties, '$.sent_ns'), received_ms FROM events"
            " WHERE id > ?",
            (last_id,),
        ).fetchall()
        now_ns = time.time_ns()
        for row_id, sent_ns, received_ms in rows:
            latencies.append((now_ns - sent_ns) / 1e6)
            to_receipt.append(received_ms - sent_ns / 1e6)
            last_id = row_id
        seen += len(rows)
        if window is None and time.monotonic() >= sending_until:
            window = list(map(sub, _counts(pid), start))
    wall = time.monotonic() - wall_start
    if window is None:
        window = list(map(sub, _counts(pid), start))
    cpu_window, switches, loop_window, loop_kernel = window
    peak = _peak_rss_mib(pid)
    conn.close()
    for agent in agents:
        agent.join(timeout=60)
    if spy is not None:
        spy.wait(timeout=60)
    if seen < expected:
        raise RuntimeError(f"only {seen} of {expected} events committed after {wall:.0f} s")
    latencies.sort()
    to_receipt.sort()
    return {
        "receipt_p50_ms": percentile(to_receipt, 50),
        "receipt_p99_ms": percentile(to_receipt, 99),
        "cpu_share": cpu_window / seconds,
        "wakeups_per_s": switches / seconds,
        "loop_share": loop_window / seconds,
        "loop_kernel_share": loop_kernel / seconds,
        "peak_rss_mib": peak,
        "p50_ms": percentile(latencies, 50),
        "p99_ms": percentile(latencies, 99),
        "events": seen,
    }


def _py_spy(pid: int, seconds: float, output: Path) -> subprocess.Popen[bytes]:
    """py-spy (`pip install py-spy`) sampling every thread of the daemon, without pausing it."""
    spy = Path(sys.executable).parent / "py-spy"
    return subprocess.Popen(
        [str(spy), "record", "--pid", str(pid), "--duration", str(int(seconds)), "--rate", "250",
         "--threads", "--format", "raw", "--output", str(output)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


# The anchor: an asyncio server that receives and counts lines, nothing more. With a
# second argument it reads as the daemon's ingest.sock does, through the daemon's own
# turns (read_turns.py, with no writer to wait for): a connection that had data, and had
# had some less than a turn before, is out of the poller and read on the next turn of that
# many seconds, straight from its socket until EAGAIN, so a read takes what came
# meanwhile; one found empty, ended or failed goes back to its transport.
_COUNTING_SERVER = r"""
import asyncio, sys
from agent_telemetryd.receivers.read_turns import ReadTurns
path = sys.argv[1]
interval = float(sys.argv[2]) if len(sys.argv) > 2 else 0.0
turns = ReadTurns(lambda: 0, interval=interval) if interval else None
class Count(asyncio.Protocol):
    lines = 0
    def connection_made(self, transport):
        self.transport = transport
        self.fd = transport.get_extra_info("socket").fileno()
        self.last = asyncio.get_running_loop().time()
    def data_received(self, data):
        Count.lines += data.count(b"\n")
        if turns is not None:
            now = asyncio.get_running_loop().time()
            turns.hold(self.transport, self.fd, self, len(data), now - self.last)
            self.last = now
async def main():
    loop = asyncio.get_running_loop()
    server = await loop.create_unix_server(Count, path)
    print("ready", flush=True)
    await asyncio.Event().wait()
asyncio.run(main())
"""


def anchor_run(rate: float, seconds: float, read_interval: float = 0.0) -> float:
    """CPU share of one core of the counting server under the same agents; with
    `read_interval`, reading on the daemon's turns."""
    with tempfile.TemporaryDirectory(prefix="at-steady-", dir="/tmp") as tmp:
        path = Path(tmp) / "ingest.sock"
        server = subprocess.Popen(
            [sys.executable, "-c", _COUNTING_SERVER, str(path), str(read_interval)],
            stdout=subprocess.PIPE,
        )
        try:
            assert server.stdout is not None
            server.stdout.readline()
            agents, go = _start_agents(path, rate, seconds)
            time.sleep(SETTLE_SECONDS)
            cpu_start = _cpu_seconds(server.pid)
            go.set()
            time.sleep(seconds)
            cpu = _cpu_seconds(server.pid) - cpu_start
            for agent in agents:
                agent.join(timeout=60)
        finally:
            server.kill()
            server.wait()
    return cpu / seconds


def executemany_cpu_per_row(group: int, rows: int = 50_000) -> float:
    """CPU seconds per row of plain sqlite3 inserting the same rows into the same schema,
    `group` rows a transaction (about what the daemon commits at a time at 10k/s)."""
    made = list(fixtures.buffer_rows(rows, upload="local"))
    with tempfile.TemporaryDirectory(prefix="at-steady-") as tmp:
        conn = open_buffer(Path(tmp) / "buffer.sqlite3")
        start = time.process_time()
        for i in range(0, rows, group):
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(INSERT_EVENT, made[i : i + group])
            conn.execute("COMMIT")
        elapsed = time.process_time() - start
        conn.close()
    return elapsed / rows


def rows_for(rate: int, window: float, figures: dict[str, Any], floor: float) -> list[Row]:
    label = f"{rate:,} events/s, 4 agents"
    cpu = figures["cpu_share"]
    return [
        Row(
            SECTION,
            f"{label}: daemon CPU, % of one core",
            cpu * 100,
            "%",
            "receive-only server",
            floor * 100,
            cpu / floor if floor else None,
            "<= 10%" if rate == 10_000 else "",
            cpu <= 0.10 if rate == 10_000 else None,
            note=(
                f"the real shim's track() in 4 processes, {window:g} s;"
                f" {figures['events']:,} events committed; event loop's thread"
                f" {figures['loop_share'] * 100:.1f}% (in the kernel"
                f" {figures['loop_kernel_share'] * 100:.1f}%), other threads (writer, checkpointer)"
                f" {(cpu - figures['loop_share']) * 100:.1f}%"
            ),
        ),
        Row(
            SECTION,
            f"{label}: daemon peak RSS",
            figures["peak_rss_mib"],
            "MiB",
            target="<= 60 MiB",
            met=figures["peak_rss_mib"] <= 60,
        ),
        Row(
            SECTION,
            f"{label}: daemon wake-ups a second",
            figures["wakeups_per_s"],
            "/s",
            "events a second",
            rate,
            figures["wakeups_per_s"] / rate,
            note="voluntary context switches of all the daemon's threads over the window",
        ),
        Row(SECTION, f"{label}: send -> commit p50", figures["p50_ms"], "ms"),
        Row(
            SECTION,
            f"{label}: send -> commit p99",
            figures["p99_ms"],
            "ms",
            target="<= 50 ms",
            met=figures["p99_ms"] <= 50,
            note=(
                f"track() to seen committed by a reader polling every"
                f" {POLL_SECONDS * 1000:.0f} ms; of which track() to the daemon's receipt"
                f" stamp: p50 {figures['receipt_p50_ms']:.1f} ms,"
                f" p99 {figures['receipt_p99_ms']:.1f} ms"
            ),
        ),
    ]


# The rates measured, highest first: 10,000 events/s is the target's; 100 is an agent
# busy with tool calls, where each event comes alone and what a wake-up costs shows.
RATES = (10_000, 1_000, 100)


def run(quick: bool, seconds: float | None = None) -> list[Row]:
    windows = {
        10_000: seconds or (1.0 if quick else 60.0),
        1_000: seconds or (0.5 if quick else 60.0),
        100: seconds or (0.5 if quick else 30.0),
    }
    figures: dict[int, dict[str, Any]] = {}
    with fixtures.daemon({"AGENT_TELEMETRY_HTTP_PORT": "off"}) as proc:
        # The lower rates first: the peak RSS read after each window is the peak since start.
        for rate in sorted(RATES):
            figures[rate] = window_run(proc, rate, windows[rate])
    rows: list[Row] = []
    for rate in RATES:
        floor = anchor_run(rate, min(windows[rate], 0.5) if quick else windows[rate])
        rows += rows_for(rate, windows[rate], figures[rate], floor)
    per_event = figures[10_000]["cpu_share"] / 10_000
    insert = executemany_cpu_per_row(100, 5_000 if quick else 100_000)
    rows.append(
        Row(
            SECTION,
            "10,000 events/s: daemon CPU per event",
            per_event * 1e6,
            "µs",
            "sqlite3 executemany, CPU per row",
            insert * 1e6,
            per_event / insert,
            note="the anchor: the same rows, schema and pragmas, 100 rows a transaction",
        )
    )
    # What receiving and storing cost before anything is done with an event: the counting
    # server reading on the daemon's turns, plus the insert alone at this rate.
    paced = anchor_run(10_000, 0.5 if quick else windows[10_000] / 4, READ_INTERVAL)
    floor = paced + insert * 10_000
    rows.append(
        Row(
            SECTION,
            "10,000 events/s: daemon CPU, % of one core, against receive + insert alone",
            figures[10_000]["cpu_share"] * 100,
            "%",
            "receive on turns + insert",
            floor * 100,
            figures[10_000]["cpu_share"] / floor if floor else None,
            note=(
                f"the anchor: the counting server reading each connection on the daemon's"
                f" {READ_INTERVAL * 1000:.0f} ms turns, straight from its socket"
                f" ({paced * 100:.1f}% of a core) plus"
                f" sqlite3 executemany of the same rows at 10,000 a second"
                f" ({insert * 10_000 * 100:.1f}%)"
            ),
        )
    )
    return rows


if __name__ == "__main__":
    import argparse

    from bench.report import format_table

    parser = argparse.ArgumentParser(prog="python -m bench.steady")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--seconds", type=float, help="length of each window")
    parser.add_argument("--profile", type=Path, help="py-spy the daemon at --rate into this file")
    parser.add_argument("--rate", type=float, default=10_000)
    args = parser.parse_args()
    if args.profile:
        print(daemon_run(args.rate, args.seconds or 20.0, args.profile))
    else:
        print(format_table(run(args.quick, args.seconds)))
