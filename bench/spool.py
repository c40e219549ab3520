"""The spool, end to end: what an agent's exit costs with the daemon stopped, what the daemon
gets back, and how fast it takes spool files at start.

- An agent (the real shim, in the daemon's own AGENT_TELEMETRY_HOME, so its spool is the
  folder the daemon reads) tracks 50,000 events and exits while the daemon is SIGSTOPped.
  Its run to exit is timed against the same interpreter importing the shim and making no
  call; then the daemon is let go and the events it stored (from the socket and from the
  spool) are counted, with what the agent reported lost (`client_*`).
- Four spool files of 50,000 shim lines each wait when the daemon starts: events/s from
  the moment it accepts connections until all are committed, against the same events
  sent by four producers over ingest.sock to a running daemon (bench/ingest.py), in the
  same run.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

from bench import fixtures
from bench.ingest import socket_run
from bench.report import Row, median
from tests.daemon_process import DaemonProcess, clean_environment, make_home

SECTION = "spool"
_AGENT = """
import sys
from agent_telemetry import track
for i in range(int(sys.argv[1])):
    track("agent.step", {"i": i})
"""
_IDLE_AGENT = "import sys, agent_telemetry"
# The shim's exit before it spooled: it gave a reading daemon up to 2 s, then dropped.
EXIT_BOUND_MS = 2000.0


def _run_ms(env: dict[str, str], *args: str) -> float:
    return fixtures.run_ms([sys.executable, "-c", *args], env=env, timeout=120)


def _stopped_exit(proc: DaemonProcess, calls: int) -> dict[str, float]:
    """One agent tracking `calls` with the daemon stopped; then what the daemon got back."""
    assert proc.proc is not None
    conn = fixtures.read_only(proc.database)
    before, lost_before = fixtures.stored(conn), fixtures.client_drops(proc)
    os.kill(proc.proc.pid, signal.SIGSTOP)
    try:
        wall = _run_ms(proc.env, _AGENT, str(calls))
    finally:
        os.kill(proc.proc.pid, signal.SIGCONT)
    deadline = time.monotonic() + 120
    folder = proc.home / "data" / "spool"
    while True:
        stored = fixtures.stored(conn) - before
        lost = fixtures.client_drops(proc) - lost_before
        if (stored + lost >= calls and not list(folder.glob("*.ndjson"))) or (
            time.monotonic() > deadline
        ):
            break
        time.sleep(0.05)
    conn.close()
    return {"wall": wall, "stored": stored, "lost": lost}


def _spool_files(folder: Path, files: int, per_file: int) -> None:
    folder.mkdir(parents=True, mode=0o700, exist_ok=True)
    for index in range(files):
        lines = fixtures.wire_lines(per_file, index * per_file)
        path = folder / f"{40_000 + index}-{index:012x}.ndjson"
        path.write_bytes(b"".join(lines))
        path.chmod(0o600)


def _start_on_spool(files: int, per_file: int) -> float:
    """Events/s a starting daemon takes from spool files, from accepting to committed."""
    home = make_home()
    proc = DaemonProcess(home, clean_environment(home, {"AGENT_TELEMETRY_HTTP_PORT": "off"}))
    try:
        # One start first, so the buffer exists and the timed start does no migration.
        proc.start()
        proc.stop()
        _spool_files(home / "data" / "spool", files, per_file)
        proc.start(wait=False)
        fixtures.wait_connectable(proc.ingest_socket, timeout=30)
        accepting = time.monotonic()
        done = fixtures.wait_stored(proc.database, files * per_file, timeout=300)
        return files * per_file / (done - accepting)
    finally:
        proc.cleanup()


def run(quick: bool) -> list[Row]:
    calls = 5_000 if quick else 50_000
    reps = 1 if quick else 3
    per_file = 5_000 if quick else 50_000
    exits: list[dict[str, float]] = []
    idle: list[float] = []
    spool_rates: list[float] = []
    socket_rates: list[float] = []
    with fixtures.daemon({"AGENT_TELEMETRY_RATE_LIMIT": "off"}) as proc:
        for _ in range(reps):
            idle.append(_run_ms(proc.env, _IDLE_AGENT))
            exits.append(_stopped_exit(proc, calls))
            socket_rates.append(socket_run(proc, 4, 4 * per_file))
            spool_rates.append(_start_on_spool(4, per_file))
    idle_ms = median(idle)
    wall = median(e["wall"] for e in exits)
    stored = min(e["stored"] for e in exits)
    lost = max(e["lost"] for e in exits)
    spool_rate, socket_rate = median(spool_rates), median(socket_rates)
    return [
        Row(
            SECTION,
            f"agent run to exit, {calls:,} track(), daemon SIGSTOPped",
            wall,
            "ms",
            "agent, no track()",
            idle_ms,
            wall / idle_ms,
            f"< +{EXIT_BOUND_MS:,.0f} ms (the exit flush's bound before the spool)",
            wall - idle_ms < EXIT_BOUND_MS,
            note=f"spool in the daemon's data dir; median of {reps}",
        ),
        Row(
            SECTION,
            "events stored once the daemon runs again",
            stored,
            "events",
            "events tracked",
            calls,
            stored / calls,
            "all (socket + spool)",
            stored == calls,
            note=f"worst of {reps}; reported lost (client_*): {lost:,.0f}",
        ),
        Row(
            SECTION,
            f"spool files at start, 4 x {per_file:,} events",
            spool_rate,
            "events/s",
            "ingest.sock, 4 producers",
            socket_rate,
            spool_rate / socket_rate,
            "",
            None,
            note=f"from accepting connections to all committed; median of {reps}",
        ),
    ]
