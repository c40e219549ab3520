"""What the benches share: a real daemon subprocess, realistic events, pre-filled buffers."""

from __future__ import annotations

import contextlib
import os
import resource
import socket
import sqlite3
import subprocess
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import orjson

from agent_telemetry._wire import encode_event, uuid7
from agent_telemetryd import __version__
from agent_telemetryd.store.database import open_buffer
from agent_telemetryd.store.writer import INSERT_EVENT
from tests.daemon_process import DaemonProcess, clean_environment, make_home

EVENT_NAMES = ("agent.run.completed", "tool.call", "llm.request", "tool.call.failed")
AGENTS = ("planner", "coder", "reviewer")


def properties(i: int) -> dict[str, Any]:
    """A typical small event: a duration, a model, token counts, a status."""
    return {
        "duration_ms": i % 997,
        "model": "model-1",
        "tokens_in": i % 4096,
        "tokens_out": i % 512,
        "status": "error" if i % 50 == 0 else "ok",
        "tool": "search",
    }


def wire_lines(count: int, seed: int = 0) -> list[bytes]:
    """NDJSON lines exactly as the Python shim writes them to ingest.sock."""
    now_ms = time.time_ns() // 1_000_000
    return [
        encode_event(EVENT_NAMES[i % 4], properties(seed + i), agent=AGENTS[i % 3], now_ms=now_ms)
        for i in range(count)
    ]


def buffer_rows(count: int, *, upload: str, received_ms: int | None = None) -> Iterator[tuple]:
    """Rows as the ingestor hands them to the writer (the same 13 columns)."""
    base = received_ms if received_ms is not None else int(time.time() * 1000)
    consent = "local" if upload == "local" else "upload"
    for i in range(count):
        ms = base - (count - i) // 10  # spread over the past, ten events a millisecond
        yield (
            uuid7(ms),
            EVENT_NAMES[i % 4],
            ms,
            ms,
            orjson.dumps(properties(i)).decode(),
            AGENTS[i % 3],
            4242,
            "unix",
            consent,
            upload,
            "bench-anonymous-id",
            __version__,
            None,  # trace_id, span_id, parent_span_id: plain events
            None,
            None,
            None,  # eligible_ms: eligible on arrival
        )


def fill_buffer(path: Path, count: int, *, upload: str, chunk: int = 50_000) -> None:
    """Append `count` rows straight into a (stopped) daemon's buffer, with its counters."""
    conn = open_buffer(path)
    try:
        rows = buffer_rows(count, upload=upload)
        done = 0
        while done < count:
            take = min(chunk, count - done)
            batch = [next(rows) for _ in range(take)]
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(INSERT_EVENT, batch)
            for name in ("received", "stored"):
                conn.execute(
                    "INSERT INTO counters (name, value) VALUES (?, ?) ON CONFLICT (name)"
                    " DO UPDATE SET value = value + excluded.value",
                    (name, take),
                )
            conn.execute("COMMIT")
            done += take
    finally:
        conn.close()


@contextlib.contextmanager
def daemon(
    extra_env: Mapping[str, str] | None = None,
    home: Path | None = None,
    wait: bool = True,
    ready: str = "status",
) -> Iterator[DaemonProcess]:
    """A real daemon in a temporary home; always stopped and removed afterwards. `ready`
    is how its readiness is waited for (DaemonProcess.start): "notify" asks it nothing
    over HTTP, so it has not loaded its HTTP side."""
    home = home or make_home()
    env = clean_environment(
        home, {"AGENT_TELEMETRY_HTTP_PORT": str(free_port()), **(extra_env or {})}
    )
    proc = DaemonProcess(home, env)
    try:
        proc.start(wait=wait, ready=ready)
        yield proc
    finally:
        with contextlib.suppress(Exception):
            if proc.proc is not None:
                os.kill(proc.proc.pid, 18)  # SIGCONT, in case a bench left it stopped
        with contextlib.suppress(Exception):
            proc.stop()
        proc.cleanup()


def run_ms(args: list[str], env: Mapping[str, str] | None = None, timeout: float = 120) -> float:
    """Wall milliseconds from starting `args` to its exit; raises if it fails or hangs.

    `subprocess.run(..., timeout=...)` finds the exit by polling with a growing sleep (up
    to 50 ms), which would be part of the figure: 130 ms runs measured 164. This waits in
    `waitpid` instead, with a timer that kills a child past `timeout`."""
    start = time.perf_counter()
    child = subprocess.Popen(args, env=env)
    watchdog = threading.Timer(timeout, child.kill)
    watchdog.start()
    try:
        code = child.wait()
    finally:
        watchdog.cancel()
    elapsed = (time.perf_counter() - start) * 1000
    if code != 0:
        raise subprocess.CalledProcessError(code, args)
    return elapsed


def children_cpu_ms() -> float:
    """CPU milliseconds (user and system) of every child this process has waited for."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (usage.ru_utime + usage.ru_stime) * 1000


def client_drops(proc: DaemonProcess) -> int:
    """Losses the shims reported to the daemon (`client_*` in `status`)."""
    reasons = proc.status()["counters"]["dropped_by_reason"]
    return sum(count for name, count in reasons.items() if name.startswith("client_"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def http_port(proc: DaemonProcess) -> int:
    return int(proc.env["AGENT_TELEMETRY_HTTP_PORT"])


def stored(conn: sqlite3.Connection) -> int:
    row = conn.execute("SELECT value FROM counters WHERE name = 'stored'").fetchone()
    return int(row[0]) if row else 0


def read_only(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)
    conn.execute("PRAGMA busy_timeout = 5000")
    return conn


def wait_stored(path: Path, target: int, timeout: float = 120.0, poll: float = 0.002) -> float:
    """Block until the buffer's `stored` counter reaches `target`; returns when (monotonic)."""
    conn = read_only(path)
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if stored(conn) >= target:
                return time.monotonic()
            time.sleep(poll)
        raise TimeoutError(f"buffer reached {stored(conn)} of {target} stored events")
    finally:
        conn.close()


def wait_connectable(path: Path, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket(socket.AF_UNIX) as sock, contextlib.suppress(OSError):
            sock.connect(str(path))
            return
        time.sleep(0.005)
    raise TimeoutError(f"{path} did not accept a connection in {timeout}s")


def default_transforms() -> list[Any]:
    """The daemon's privacy transforms with the settings they read at their defaults
    (content off, no allowlists)."""
    from types import SimpleNamespace

    from agent_telemetryd.daemon import privacy_transforms

    config = SimpleNamespace(
        allow_events=None, allow_properties=None, capture_content=False, max_string_chars=4096
    )
    return list(privacy_transforms(config))  # type: ignore[arg-type]


def collecting_ingestor(rows: list[Any], transforms: list[Any] | None = None) -> Any:
    """An `Ingestor` in mode local whose writer's place only collects the rows it is
    handed into `rows`: for benches of the steps before SQLite, which insert them after."""
    from agent_telemetryd.events import Limits
    from agent_telemetryd.ingest import Ingestor

    class Rows:
        queued_events = 0

        def submit(self, new: list[Any], counters: dict[str, int], **_: Any) -> None:
            rows.extend(new)

    return Ingestor(
        limits=Limits(),
        mode=lambda: "local",
        writer=lambda: Rows(),  # type: ignore[arg-type, return-value]
        anonymous_id=lambda: "bench",
        transforms=default_transforms() if transforms is None else transforms,
    )


def callgrind_total(dump: Path) -> int:
    """The instructions counted in one callgrind dump file."""
    for line in dump.read_text().splitlines():
        if line.startswith("totals:"):
            return int(line.split()[1])
    raise RuntimeError(f"no totals in {dump.name}")
