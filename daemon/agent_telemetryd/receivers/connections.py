"""What every listener shares: a connection budget, its counts, and the shutdown deadline.

Each listener (loopback TCP, api.sock, ingest.sock) has a budget of its own, so a flood on
the TCP port, which any local user can reach, never uses up the connections the owner's
agents and CLI need on the Unix sockets. Over its budget a listener refuses the newest
connection: the ones already open are the ones doing work.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from agent_telemetryd.lazy_log import get_logger

log = get_logger("agent_telemetryd.connections")

# Connections one readiness event of a listener accepts before any is looked at (asyncio
# accepts in bursts of its `backlog` argument). Over the cap they are accepted, then refused.
ACCEPT_BURST = 128
# The kernel's queue of connections not yet accepted, set after asyncio's listen(): deeper
# than the burst, because queued connections cost no file descriptors, and a queue that
# overflows turns a burst of connects into ones the daemon never sees (with SYN cookies,
# a TCP client even believes it is connected).
LISTEN_BACKLOG = 1024


def deepen_listen_queue(sock: socket.socket) -> None:
    """asyncio listens with its accept burst as the backlog; a second listen() on a
    listening socket only changes the queue's length."""
    sock.listen(LISTEN_BACKLOG)


# While a listener keeps refusing, one log line a minute says so, with the count: a flood
# must not become a flood of log lines.
_CAP_LOG_EVERY_SECONDS = 60.0


@dataclass(frozen=True)
class ConnectionLimits:
    """One HTTP listener's budget and timeouts (config: limits.*)."""

    max_connections: int
    idle_timeout: float  # no request under way: between keep-alive requests, or none yet
    header_timeout: float  # from a request's first byte to the end of its headers
    body_timeout: float  # from the end of the headers to the end of the body


class Drain:
    """The one deadline of a shutdown, shared by every listener; a forced exit cuts it."""

    def __init__(self) -> None:
        self._deadline: float | None = None
        self._forced = asyncio.Event()

    @property
    def begun(self) -> bool:
        return self._deadline is not None

    @property
    def forced(self) -> bool:
        return self._forced.is_set()

    def begin(self, seconds: float) -> None:
        if self._deadline is None:
            self._deadline = time.monotonic() + seconds

    def force(self) -> None:
        self._forced.set()

    def remaining(self) -> float:
        if self._deadline is None:
            return float("inf")
        if self._forced.is_set():
            return 0.0
        return max(0.0, self._deadline - time.monotonic())

    async def wait_for(self, done: asyncio.Event) -> bool:
        """Wait until `done` is set, the deadline passes or the exit is forced; True if done."""
        if done.is_set() or self.remaining() == 0:
            return done.is_set()
        waiters = {asyncio.ensure_future(done.wait()), asyncio.ensure_future(self._forced.wait())}
        try:
            await asyncio.wait(waiters, timeout=self.remaining(), return_when="FIRST_COMPLETED")
        finally:
            for waiter in waiters:
                waiter.cancel()
        return done.is_set()


class Connection(Protocol):
    def close_now(self) -> None: ...


class ListenerConnections:
    """The open connections of one listener, within its cap, and what became of the rest."""

    def __init__(self, listener: str, cap: int) -> None:
        self.listener = listener
        self.cap = cap
        self.open: set[Connection] = set()
        self.peak = 0
        self.refused = 0
        self.timed_out = 0
        self.client_gone = 0
        self.accepting = True
        self._empty = asyncio.Event()
        self._empty.set()
        self._refused_unlogged = 0
        self._cap_logged_at: float | None = None
        # Told when the last open connection ends (the idle timer starts again then).
        self.on_empty: Callable[[], None] | None = None

    def admit(self, connection: Connection) -> bool:
        """Take a new connection, or say no (over the cap, or stopping): the caller closes it."""
        if not self.accepting or len(self.open) >= self.cap:
            self.refused += 1
            self._note_refusal()
            return False
        self.open.add(connection)
        self._empty.clear()
        self.peak = max(self.peak, len(self.open))
        return True

    def release(self, connection: Connection) -> None:
        if connection not in self.open:
            return
        self.open.discard(connection)
        if not self.open:
            self._empty.set()
            if self.on_empty is not None:
                self.on_empty()

    async def wait_empty(self, drain: Drain) -> int:
        """Wait (within the drain's deadline) for every connection to end; closes what is
        left and returns how many that was."""
        await drain.wait_for(self._empty)
        left = list(self.open)
        for connection in left:
            connection.close_now()
        if left:
            log.warning("connections_cut_at_shutdown", listener=self.listener, count=len(left))
        return len(left)

    def stats(self) -> dict[str, Any]:
        return {
            "open": len(self.open),
            "cap": self.cap,
            "peak": self.peak,
            "refused": self.refused,
            "timed_out": self.timed_out,
            "client_gone": self.client_gone,
        }

    def _note_refusal(self) -> None:
        if not self.accepting:
            return  # refusing while stopping is the plan, not news
        self._refused_unlogged += 1
        now = time.monotonic()
        if self._cap_logged_at is None or now - self._cap_logged_at >= _CAP_LOG_EVERY_SECONDS:
            log.warning(
                "connection_cap_reached",
                listener=self.listener,
                cap=self.cap,
                refused=self._refused_unlogged,
            )
            self._cap_logged_at = now
            self._refused_unlogged = 0
