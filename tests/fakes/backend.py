"""A real aiohttp server on 127.0.0.1 in a thread of its own, so tests stay synchronous.

Tests drive the daemon with blocking CLI calls; a backend on the test's own event loop
would be frozen meanwhile. Each fake backend subclasses `ThreadedBackend`, adds routes,
and records every request it received (decoded) for the test to compare.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: Any  # decoded JSON, or None
    raw_size: int  # bytes on the wire (compressed)
    status: int  # what the fake answered
    at: float = field(default_factory=time.monotonic)


@dataclass
class Scripted:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: dict[str, Any] = field(default_factory=dict)


class ThreadedBackend:
    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self.script: list[Scripted] = []  # answers to give first, in order
        self.answer_always: Scripted | None = None  # then this one, to every request
        self.hold = threading.Event()  # while set, batch requests wait (kill -9 tests)
        self.arrived = threading.Event()  # set when a batch request arrives
        self.release = threading.Event()
        self.delay = 0.0  # seconds before answering each batch request
        self.hold_after: int | None = None  # hold every batch request after this many
        self._arrivals = 0
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None
        self.url = ""

    # --- life ---
    def routes(self, app: web.Application) -> None:
        raise NotImplementedError

    def start(self) -> ThreadedBackend:
        ready = threading.Event()

        def serve() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            app = web.Application(client_max_size=64 * 1024 * 1024)
            self.routes(app)
            runner = web.AppRunner(app, access_log=None)
            loop.run_until_complete(runner.setup())
            site = web.TCPSite(runner, "127.0.0.1", 0)
            loop.run_until_complete(site.start())
            port = runner.addresses[0][1]
            self.url = f"http://127.0.0.1:{port}"
            self._runner = runner
            ready.set()
            loop.run_forever()
            loop.run_until_complete(runner.cleanup())
            loop.close()

        self._thread = threading.Thread(target=serve, daemon=True, name="fake-backend")
        self._thread.start()
        assert ready.wait(10), "fake backend did not start"
        return self

    def stop(self) -> None:
        self.release.set()
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(10)

    # --- helpers for handlers ---
    def record(self, item: Recorded) -> None:
        with self._lock:
            self.requests.append(item)

    def next_scripted(self) -> Scripted | None:
        with self._lock:
            return self.script.pop(0) if self.script else self.answer_always

    async def pause_if_asked(self) -> None:
        with self._lock:
            self._arrivals += 1
            arrivals = self._arrivals
        if self.hold_after is not None and arrivals > self.hold_after:
            self.hold.set()
        if self.hold.is_set():
            self.arrived.set()
            # A threading.Event set from the test thread: wait for it off the loop.
            await asyncio.get_running_loop().run_in_executor(None, self.release.wait, 60)
        if self.delay:
            await asyncio.sleep(self.delay)

    # --- for tests ---
    def wait_for(self, predicate: Any, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return
            time.sleep(0.02)
        raise AssertionError(f"timed out; {len(self.requests)} requests so far")

    def snapshot(self) -> list[Recorded]:
        with self._lock:
            return list(self.requests)


async def read_gzip_json(request: web.Request, limit: int) -> tuple[Any, int, str | None]:
    """(decoded JSON, wire size, error) as a capture API reads a gzip body.

    aiohttp's server inflates a `Content-Encoding: gzip` body itself (and fails the read
    when it does not decode), so what `read()` returns is the decoded body.
    """
    import orjson

    wire_size = request.content_length or 0
    if request.headers.get("Content-Encoding") != "gzip":
        return None, wire_size, "body is not gzip-encoded"
    try:
        data = await request.read()
    except Exception:
        return None, wire_size, "gzip did not decode"
    if len(data) > limit:
        return None, wire_size, "body over the size limit"
    try:
        return orjson.loads(data), wire_size, None
    except orjson.JSONDecodeError:
        return None, wire_size, "not JSON"


def events_of(requests: Iterator[Recorded] | list[Recorded], key: str) -> list[dict[str, Any]]:
    """Every event in the 2xx-answered batch requests, in arrival order."""
    found: list[dict[str, Any]] = []
    for item in requests:
        if 200 <= item.status < 300 and isinstance(item.body, dict):
            found.extend(item.body.get(key, []))
    return found
