"""One flush of a large backlog to a loopback PostHog-style backend: time and peak memory.

The buffer is filled directly with N pending events (the cost measured is the upload,
not ingest), then the real daemon is started in upload mode and `agent-telemetry flush`
is timed. Peak resident memory of the daemon is read from /proc (VmHWM) before and after.

A loopback backend that answers at once makes the daemon the bound by construction. The
second run gives the backend a fixed service time per request (SLOW_BACKEND_MS, less than
one round trip to a cloud region) and compares the flush with what that backend allows:
batch size / service time. The ratio is how much of the flush is the backend's.

    .venv/bin/python -m bench.upload_flush          # 1,000,000 events
    .venv/bin/python -m bench.upload_flush --quick  # 5,000 events
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web

from agent_telemetryd import __version__
from agent_telemetryd.store import queries
from agent_telemetryd.store.database import open_buffer
from agent_telemetryd.store.writer import INSERT_EVENT
from tests.daemon_process import DaemonProcess, clean_environment, make_home

FULL_EVENTS = 1_000_000
QUICK_EVENTS = 5_000
SLOW_BACKEND_MS = 20
SLOW_FULL_EVENTS = 50_000
SLOW_QUICK_EVENTS = 1_000
BATCH_SIZE = 100


class CountingBackend:
    """`POST /batch/`: gzip JSON in (aiohttp inflates it), count the events, answer 200."""

    def __init__(self, delay_ms: float = 0) -> None:
        self.delay = delay_ms / 1000
        self.events = 0
        self.requests = 0
        self.url = ""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    async def _batch(self, request: web.Request) -> web.Response:
        body = orjson.loads(await request.read())
        if self.delay:
            await asyncio.sleep(self.delay)
        self.events += len(body["batch"])
        self.requests += 1
        return web.json_response({"status": "Ok"})

    def start(self) -> CountingBackend:
        ready = threading.Event()

        def serve() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            app = web.Application(client_max_size=64 * 1024 * 1024)
            app.router.add_post("/batch/", self._batch)
            runner = web.AppRunner(app, access_log=None)
            loop.run_until_complete(runner.setup())
            loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", 0).start())
            self.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
            ready.set()
            loop.run_forever()
            loop.run_until_complete(runner.cleanup())

        self._thread = threading.Thread(target=serve, daemon=True)
        self._thread.start()
        ready.wait(10)
        return self

    def stop(self) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(10)


def fill_buffer(database: Path, count: int) -> None:
    conn = open_buffer(database)
    try:
        conn.execute("BEGIN IMMEDIATE")
        anonymous_id = queries.ensure_anonymous_id(conn)
        now = int(time.time() * 1000)
        properties = orjson.dumps({"duration_ms": 812, "model": "small", "tokens": 1234}).decode()
        rows = (
            (
                str(uuid.uuid4()),
                "agent.run.completed",
                now,
                now,
                properties,
                "bench",
                1,
                "unix",
                "upload",
                "pending",
                anonymous_id,
                __version__,
                None,  # trace_id, span_id, parent_span_id: plain events
                None,
                None,
                None,  # eligible_ms: eligible on arrival
            )
            for _ in range(count)
        )
        conn.executemany(INSERT_EVENT, rows)
        conn.execute("INSERT INTO counters (name, value) VALUES ('stored', ?)", (count,))
        conn.execute("COMMIT")
    finally:
        conn.close()


def _memory_kib(pid: int) -> dict[str, int]:
    fields: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            fields[name] = int(value.split()[0])
    return fields


def _cpu_seconds(pid: int | None) -> float:
    """User + system CPU time of a process (None: this one, where the backend runs)."""
    fields = Path(f"/proc/{pid or 'self'}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def run(quick: bool = False) -> dict[str, Any]:
    result = flush_once(QUICK_EVENTS if quick else FULL_EVENTS)
    slow = flush_once(SLOW_QUICK_EVENTS if quick else SLOW_FULL_EVENTS, SLOW_BACKEND_MS)
    result[f"backend_{SLOW_BACKEND_MS}ms_events_per_second"] = slow["events_per_second"]
    result[f"backend_{SLOW_BACKEND_MS}ms_bound_per_second"] = round(
        BATCH_SIZE / (SLOW_BACKEND_MS / 1000)
    )
    return result


def flush_once(count: int, backend_ms: float = 0) -> dict[str, Any]:
    backend = CountingBackend(backend_ms).start()
    home = make_home()
    env = clean_environment(
        home,
        {
            "AGENT_TELEMETRY_MODE": "upload",
            "AGENT_TELEMETRY_SENDER": "posthog",
            "POSTHOG_API_KEY": "phc_bench",
            "POSTHOG_HOST": backend.url,
            "AGENT_TELEMETRY_RATE_LIMIT": "off",
            "AGENT_TELEMETRY_BATCH_SIZE": str(BATCH_SIZE),
        },
    )
    daemon = DaemonProcess(home, env)
    try:
        fill_buffer(daemon.database, count)
        daemon.start()
        assert daemon.proc is not None
        before = _memory_kib(daemon.proc.pid)
        daemon_cpu_before = _cpu_seconds(daemon.proc.pid)
        backend_cpu_before = _cpu_seconds(None)
        started = time.perf_counter()
        report = json.loads(daemon.cli("flush", "--json", timeout=900).stdout)
        seconds = time.perf_counter() - started
        daemon_cpu = _cpu_seconds(daemon.proc.pid) - daemon_cpu_before
        backend_cpu = _cpu_seconds(None) - backend_cpu_before
        after = _memory_kib(daemon.proc.pid)
    finally:
        daemon.cleanup()
        backend.stop()
    return {
        "events": count,
        "events_sent": report["events_sent"],
        "batches": report["batches"],
        "backend_events": backend.events,
        "seconds": round(seconds, 2),
        "events_per_second": round(report["events_sent"] / seconds) if seconds else 0,
        # Which side bounds the flush: CPU seconds per wall second of each (1.0 = a core).
        "daemon_cpu_share": round(daemon_cpu / seconds, 2) if seconds else 0,
        "backend_cpu_share": round(backend_cpu / seconds, 2) if seconds else 0,
        "rss_before_mib": round(before["VmRSS"] / 1024, 1),
        "peak_rss_mib": round(after["VmHWM"] / 1024, 1),
        "rss_after_mib": round(after["VmRSS"] / 1024, 1),
    }


def main() -> None:
    result = run(quick="--quick" in sys.argv)
    width = max(len(key) for key in result)
    print(f"upload flush to a loopback PostHog-style backend (batch size {BATCH_SIZE})")
    for key, value in result.items():
        print(f"  {key:<{width}}  {value}")


if __name__ == "__main__":
    main()
