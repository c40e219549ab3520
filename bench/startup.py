"""Startup: from exec to ingest.sock taking connections, with an empty buffer and with a
large backlog of pending events; and the CPU of two commands beside a running daemon:
`agent-telemetry status`, the one people and scripts run most, and `export` of a small
buffer, which reads the file itself. The anchor is the interpreter alone
(`python -c pass`).
"""

from __future__ import annotations

import subprocess
import sys
import time

from bench import fixtures
from bench.report import Row, median
from tests.daemon_process import DaemonProcess, clean_environment, make_home

SECTION = "startup"


def _exec_to_accepting(proc: DaemonProcess) -> float:
    start = time.monotonic()
    proc.start(wait=False)
    fixtures.wait_connectable(proc.ingest_socket, timeout=30)
    elapsed = time.monotonic() - start
    proc.stop()
    return elapsed


def _bare_interpreter() -> float:
    start = time.monotonic()
    subprocess.run([sys.executable, "-c", "pass"], check=True)
    return time.monotonic() - start


def _cpu_ms(command: list[str], env: dict[str, str] | None = None) -> float:
    """CPU milliseconds (user and system) that running `command` to its end cost."""
    before = fixtures.children_cpu_ms()
    subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL)
    return fixtures.children_cpu_ms() - before


def run(quick: bool) -> list[Row]:
    backlog = 20_000 if quick else 2_000_000
    exported = 1_000
    reps = 1 if quick else 5
    empty_home, full_home = make_home(), make_home()
    env = {"AGENT_TELEMETRY_MODE": "upload", "AGENT_TELEMETRY_HTTP_PORT": "off"}
    empty = DaemonProcess(empty_home, clean_environment(empty_home, env))
    full = DaemonProcess(full_home, clean_environment(full_home, env))
    try:
        # Made by one daemon start first, so the pending rows go into a real buffer file.
        _exec_to_accepting(full)
        fixtures.fill_buffer(full.database, backlog, upload="pending")
        times: dict[str, list[float]] = {"bare": [], "empty": [], "full": []}
        for _ in range(reps):
            times["bare"].append(_bare_interpreter())
            times["empty"].append(_exec_to_accepting(empty))
            times["full"].append(_exec_to_accepting(full))
        fixtures.fill_buffer(empty.database, exported, upload="local")
        cpu: dict[str, list[float]] = {"bare": [], "status": [], "export": []}
        empty.start()
        commands = {
            "status": [empty.program, "status", "--json"],
            "export": [empty.program, "export", "--format", "ndjson"],
        }
        for _ in range(reps * 2):
            cpu["bare"].append(_cpu_ms([sys.executable, "-c", "pass"]))
            for name, command in commands.items():
                cpu[name].append(_cpu_ms(command, empty.env))
    finally:
        empty.cleanup()
        full.cleanup()
    bare, first, loaded = (median(times[k]) * 1000 for k in ("bare", "empty", "full"))
    bare_cpu, status_cpu, export_cpu = (median(cpu[k]) for k in ("bare", "status", "export"))
    return [
        Row(
            SECTION,
            "exec -> accepting, empty buffer",
            first,
            "ms",
            "python -c pass",
            bare,
            first / bare,
            "< 500 ms",
            first < 500,
            note=f"median of {reps} starts",
        ),
        Row(
            SECTION,
            f"exec -> accepting, {backlog:,} pending",
            loaded,
            "ms",
            "empty buffer",
            first,
            loaded / first,
            "< 500 ms, ~1x",
            loaded < 500,
        ),
        _command_row("agent-telemetry status", status_cpu, bare_cpu, f"median of {reps * 2}"),
        _command_row(
            f"agent-telemetry export, {exported:,} events",
            export_cpu,
            bare_cpu,
            f"median of {reps * 2}; NDJSON to /dev/null",
        ),
    ]


def _command_row(command: str, cpu: float, bare_cpu: float, note: str) -> Row:
    """A command's CPU beside a running daemon, against the bare interpreter's."""
    return Row(
        SECTION,
        f"{command}, daemon running: CPU",
        cpu,
        "ms",
        "python -c pass, CPU",
        bare_cpu,
        cpu / bare_cpu if bare_cpu else None,
        "",
        None,
        note=note,
    )
