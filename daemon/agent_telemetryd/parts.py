"""What a part of the daemon (the uploader, the dashboard, reload, …) is to the daemon.

A part starts with the daemon, with nothing of aiohttp: its runners, timers, listeners
and hooks on the context. Its HTTP routes are a second step (`add_routes`), which the
daemon runs when the first HTTP connection has it build its apps (receivers/http_start.py),
so a daemon nobody asks over HTTP never loads aiohttp.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from aiohttp import web

    from agent_telemetryd.context import DaemonContext

    # Adds a part's routes to the two apps: api.sock's and the loopback TCP port's.
    AddRoutes = Callable[[web.Application, web.Application], None]
    Part = Callable[[DaemonContext], Awaitable["Started"]]

Closer = Callable[[], Awaitable[None]]


async def nothing_to_close() -> None:
    return None


@dataclass(frozen=True)
class Started:
    """A part, started: how to stop it, and the routes it serves once there is HTTP.

    `stopping` runs as a shutdown begins, while the listeners stop accepting: it ends the
    work a request under way is waiting for (a flush), so that request gets its answer
    within the drain's deadline instead of having its connection cut. `close` runs after
    the listeners have drained."""

    close: Closer = nothing_to_close
    add_routes: AddRoutes | None = None
    stopping: Closer | None = None
