"""Idle exit: a socket-activated daemon ends itself after a quiet period.

With socket activation the service manager holds the listening sockets, so a daemon that
is not running loses nothing: the next agent's connection waits in the socket's queue and
starts it again, and the upload timer starts it for scheduled uploads. So after `idle_exit`
with nothing to do, the daemon stops the way SIGTERM stops it, and an idle user pays
nothing — no memory, no wake-ups.

Nothing polls. One timer runs, and it is started again by activity: a listener's last
connection closing, a flush finishing. When it fires the daemon asks its parts whether
anything keeps it up (`BusyCheck`); a part that is busy says why, and when to ask again
(`None`: its own activity will start the timer again when it ends).

When `idle_exit` applies:
- set explicitly (config `idle_exit`, or `AGENT_TELEMETRY_IDLE_EXIT`): always, a duration,
  or `off`;
- not set: 15 minutes when the service manager (systemd's socket unit, or launchd through
  the LaunchAgent's Sockets) passed the daemon its ingest socket, none of the extra OTLP
  ports (which the daemon binds itself) is configured, and the daemon did not have to bind
  its HTTP port itself (the manager's socket for it could not listen, say); otherwise
  never. A daemon started by hand has nobody to start it again, so it never idles out
  unless asked.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from agent_telemetryd.config import Config
from agent_telemetryd.lazy_log import get_logger

log = get_logger("agent_telemetryd.idle")

DEFAULT_IDLE_EXIT_SECONDS = 15 * 60


@dataclass(frozen=True, slots=True)
class Busy:
    """Why the daemon stays up; `retry`: seconds until the check is worth asking again,
    None when the activity that ends it starts the timer again itself."""

    reason: str
    retry: float | None = None


# Given the moment (Unix time) the next quiet period would end, why the daemon must not
# exit now, or None. Checks may read the buffer, so they are coroutines.
BusyCheck = Callable[[float], Awaitable[Busy | None]]


def idle_exit_seconds(
    config: Config, *, socket_activated: bool, binds_http_port: bool = False
) -> float | None:
    """How long a quiet daemon waits before it exits, or None for never.

    ``binds_http_port``: the daemon bound its fixed HTTP port itself although activated.
    """
    if config.idle_exit is not None:
        return config.idle_exit or None  # 0: `off`, set explicitly
    if not socket_activated:
        return None
    if config.otlp_http_port is not None or config.otlp_grpc_port is not None:
        return None  # the daemon binds those itself: exporters would find nothing there
    if binds_http_port:
        return None  # likewise: stopped, it would leave nobody holding the port
    return DEFAULT_IDLE_EXIT_SECONDS


class IdleTimer:
    """The one timer; `activity()` starts it again, `checks` may hold the exit off."""

    def __init__(self, seconds: float, on_idle: Callable[[], None]) -> None:
        self.seconds = seconds
        self._on_idle = on_idle
        self.checks: list[BusyCheck] = []
        self._handle: asyncio.TimerHandle | None = None
        self._deciding: asyncio.Task[None] | None = None
        self._closed = False

    def activity(self) -> None:
        """Something ended (a connection, a flush): the quiet period starts now."""
        self._arm(self.seconds)

    def close(self) -> None:
        self._closed = True
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        if self._deciding is not None:
            self._deciding.cancel()

    def _arm(self, delay: float) -> None:
        if self._closed:
            return
        if self._handle is not None:
            self._handle.cancel()
        self._handle = asyncio.get_running_loop().call_later(delay, self._expired)

    def _expired(self) -> None:
        self._handle = None
        if self._deciding is None or self._deciding.done():
            self._deciding = asyncio.get_running_loop().create_task(self._decide())

    async def _decide(self) -> None:
        next_deadline = time.time() + self.seconds
        for check in self.checks:
            busy = await check(next_deadline)
            if busy is not None:
                log.debug("idle_exit_deferred", reason=busy.reason)
                if busy.retry is not None and self._handle is None:
                    self._arm(busy.retry)
                return
        if self._handle is not None or self._closed:
            return  # activity while the checks ran: a new quiet period has begun
        log.info("idle_exit", quiet_seconds=self.seconds)
        self._on_idle()
