"""The HTTP side of the daemon, built when the first HTTP connection needs it.

An agent writing NDJSON to ingest.sock, the common case, never needs aiohttp, which is
about 16 MB resident and most of the import time of a start (socket activation wants the
first event stored soon after a connection starts the daemon). So the HTTP listeners
accept connections from the start (http_connection.py), and the first connection to any of
them asks this to import aiohttp and build every listener's app; the connections that
arrive meanwhile wait for it, each within its listener's budget and timeouts.

What the daemon had loaded just before is kept (`FirstHttp`), so `GET /v1/debug/modules`
can say what an idle daemon weighed before anyone asked it anything over HTTP.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from agent_telemetryd.lazy_log import get_logger
from agent_telemetryd.receivers.http_connection import HttpSite

if TYPE_CHECKING:
    from aiohttp import web

    # Builds the apps, importing aiohttp: each listener with the app it is to serve.
    BuildApps = Callable[[], Awaitable[Sequence[tuple[HttpSite, web.Application]]]]

log = get_logger("agent_telemetryd.http")


@dataclass(frozen=True)
class FirstHttp:
    """The first HTTP connection: on which listener, when, and the modules loaded before."""

    listener: str
    at: float  # Unix time
    modules_before: frozenset[str]


class HttpStart:
    """Builds the HTTP side once, when a listener first asks; a failure lets the next
    connection ask again."""

    def __init__(
        self,
        sites: Sequence[HttpSite],
        build: BuildApps,
        on_first: Callable[[FirstHttp], None],
    ) -> None:
        self._sites = sites
        self._build = build
        self._on_first = on_first
        self._task: asyncio.Task[None] | None = None
        self._first_seen = False
        for site in sites:
            site.wants_serving = self.wanted

    def wanted(self, listener: str) -> None:
        if self._task is not None:
            return  # under way, or done (then no connection waits)
        if not self._first_seen:
            self._first_seen = True
            self._on_first(FirstHttp(listener, time.time(), frozenset(sys.modules)))
        log.info("http_starting", listener=listener)
        self._task = asyncio.get_running_loop().create_task(self._start(), name="http-start")

    async def _start(self) -> None:
        try:
            built = await self._build()
            for site, app in built:
                await site.serve(app)
        except Exception as error:
            log.error("http_start_failed", reason=f"{type(error).__name__}: {error}")
            for site in self._sites:
                site.serving_failed()
            self._task = None  # the next connection tries again

    async def close(self) -> None:
        """At shutdown, after the listeners' drain: a build still under way is cut."""
        task = self._task
        if task is not None and not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
