"""HTTP connections on api.sock and loopback TCP: a budget, timeouts, a drain — and aiohttp
only once a connection needs it.

`HttpConnection` is the asyncio protocol of every HTTP listener, and it needs nothing of
aiohttp: it admits a connection within its listener's budget, times it, and knows where it
is — idle (nothing of a request yet, or between keep-alive requests), reading a request's
headers, or inside a request. Each has its own timeout, so a connection that never sends,
dribbles its headers or stalls its body is closed, and a request whose body has arrived is
never cut while its events commit.

The HTTP itself is aiohttp's `RequestHandler`, made per connection by the listener's
`HttpServing` (http_serving.py). A daemon whose agents only write to ingest.sock never
needs it, so the listeners start without it: the first connection to any of them asks for
it (`HttpSite.wants_serving`, which builds every listener's app), and until it is there the
connection's bytes (and an end of input) are held, then handed over in order, so the first
request is answered as every later one.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import socket
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent_telemetryd.log_budget import LogBudget
from agent_telemetryd.receivers.connections import (
    ACCEPT_BURST,
    ConnectionLimits,
    Drain,
    ListenerConnections,
    deepen_listen_queue,
)

if TYPE_CHECKING:
    from aiohttp import web

    from agent_telemetryd.receivers.http_serving import HttpServing

_BUSY_BODY = b'{"error": "too many connections to the daemon; retry shortly"}'
BUSY_RESPONSE = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
    b"Retry-After: 1\r\nConnection: close\r\nContent-Length: "
    + str(len(_BUSY_BODY)).encode()
    + b"\r\n\r\n"
    + _BUSY_BODY
)
_REQUEST_LINE_SCAN = 8192
# Held for aiohttp while it is being loaded: past this, the connection is not read until
# the handover (the kernel's buffers and the client then wait), so memory stays bounded.
HELD_BYTES = 64 * 1024


class Phase(enum.Enum):
    IDLE = "idle"
    HEADERS = "headers"
    REQUEST = "request"


class HttpConnection(asyncio.Protocol):
    """One accepted connection: admitted within the budget, timed, handed to aiohttp."""

    def __init__(self, site: HttpSite) -> None:
        self.site = site
        self.transport: asyncio.Transport | None = None
        self.admitted = False  # within the budget and not lost yet
        self.handler: web.RequestHandler | None = None  # aiohttp's, once handed over
        self.phase = Phase.IDLE
        self.route: str | None = None
        self.peer_uid: int | None = None
        self.peer_known = False
        self.ended_by_daemon = False  # a timeout or the shutdown closed it
        self.lost_in_request = False
        self.received_any = False
        self._timer: asyncio.TimerHandle | None = None
        self._request: web.BaseRequest | None = None
        # What arrived before aiohttp was there to read it.
        self._held = bytearray()
        self._held_eof = False

    # --- asyncio.Protocol --------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        if not self.site.connections.admit(self):
            transport.write(BUSY_RESPONSE)
            transport.close()
            return
        self.admitted = True
        self.site.by_transport[transport] = self
        self._arm(self.site.limits.idle_timeout, self._idle_expired)
        serving = self.site.serving
        if serving is not None:
            self.hand_over(serving)
        else:
            self.site.wait_for_serving(self)

    def data_received(self, data: bytes) -> None:
        if not self.admitted:
            return
        self.received_any = True
        if self.phase is Phase.IDLE:
            self.phase = Phase.HEADERS
            self.route = self.site.route_of_request_line(data)
            self._arm(self.site.limits.header_timeout, self._expired)
        if self.handler is not None:
            self.handler.data_received(data)
            return
        self._held += data
        if len(self._held) >= HELD_BYTES and self.transport is not None:
            self.transport.pause_reading()

    def eof_received(self) -> bool | None:
        if self.handler is not None:
            return self.handler.eof_received()
        # Kept open until aiohttp has read what came before: it then decides.
        self._held_eof = True
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        if not self.admitted:
            return
        self.admitted = False
        assert self.transport is not None
        self.site.by_transport.pop(self.transport, None)
        self.site.connections.release(self)
        if self.phase is Phase.REQUEST and not self.ended_by_daemon:
            # The client left before its answer (mid-body, say): counted, not logged.
            self.lost_in_request = True
            self.site.connections.client_gone += 1
        handler, self.handler = self.handler, None
        if handler is not None:
            handler.connection_lost(exc)
        else:
            self.site.stop_waiting(self)

    def pause_writing(self) -> None:
        if self.handler is not None:
            self.handler.pause_writing()

    def resume_writing(self) -> None:
        if self.handler is not None:
            self.handler.resume_writing()

    # --- the handover to aiohttp ---------------------------------------------------------

    def hand_over(self, serving: HttpServing) -> None:
        """Give the connection to aiohttp, with whatever it sent while it waited."""
        assert self.transport is not None
        handler = self.handler = serving.new_handler(self)
        handler.connection_made(self.transport)
        held, self._held = bytes(self._held), bytearray()
        if held:
            if self.route is None:
                self.route = self.site.route_of_request_line(held)
            handler.data_received(held)
        if self._held_eof:
            if not handler.eof_received():
                self.transport.close()  # what asyncio does when eof_received says so
        elif len(held) >= HELD_BYTES:
            self.transport.resume_reading()  # aiohttp pauses it again if it must

    # --- what the middleware and the site tell it ---------------------------------------

    def request_began(self, request: web.Request) -> None:
        self.phase = Phase.REQUEST
        self._request = request
        route = request.match_info.route.resource
        self.route = route.canonical if route is not None else None
        if request.content.is_eof():
            self._disarm()  # the body is in: no clock runs while its events commit
        else:
            self._arm(self.site.limits.body_timeout, self._body_expired)

    def request_ended(self) -> None:
        self._request = None
        if not self.admitted:
            return
        self.phase = Phase.IDLE
        self._arm(self.site.limits.idle_timeout, self._idle_expired)

    def close_if_idle(self) -> None:
        """Let an idle connection go; one in a request finishes it first, and one whose
        request came before aiohttp is answered once aiohttp is there."""
        if not self.admitted or self.phase is not Phase.IDLE:
            return
        self.ended_by_daemon = True
        if self.handler is not None and self.received_any:
            # aiohttp's own close: a response still being written is written first.
            self.handler.close()
        elif self.transport is not None:
            # Nothing of a request ever came, so nothing is to be finished (and aiohttp's
            # close would leave such a connection open until the drain's deadline).
            self.transport.close()

    def close_now(self) -> None:
        self.ended_by_daemon = True
        if self.transport is not None and not self.transport.is_closing():
            self.transport.abort()

    # --- timeouts --------------------------------------------------------------------

    def _arm(self, seconds: float, callback: Any) -> None:
        self._disarm()
        self._timer = asyncio.get_running_loop().call_later(seconds, callback)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _idle_expired(self) -> None:
        self._timer = None
        self._expired()

    def _body_expired(self) -> None:
        self._timer = None
        request = self._request
        if request is not None and request.content.is_eof():
            return  # the body arrived just now
        self._expired()

    def _expired(self) -> None:
        self._timer = None
        self.site.connections.timed_out += 1
        # abort, not close: a client that does not read would hold a close open forever.
        self.close_now()


class HttpSite:
    """One HTTP listener: its socket, its budget, and (once asked for) aiohttp behind it."""

    def __init__(
        self,
        listener: str,
        sock: socket.socket,
        *,
        owned_path: Path | None,
        limits: ConnectionLimits,
    ) -> None:
        self.listener = listener
        self.limits = limits
        self.connections = ListenerConnections(listener, limits.max_connections)
        self.by_transport: dict[asyncio.BaseTransport, HttpConnection] = {}
        self.serving: HttpServing | None = None
        self.error_lines = LogBudget()  # counts the request errors, and logs some
        # Told, with this listener's name, when a connection waits for aiohttp.
        self.wants_serving: Callable[[str], None] = lambda listener: None
        self._waiting: dict[HttpConnection, None] = {}  # in order of arrival
        self._sock = sock
        self._owned_path = owned_path  # a socket file this daemon made, else None
        self._server: asyncio.Server | None = None
        self._drained = False

    def connection_of(self, request: web.Request) -> HttpConnection | None:
        return self.by_transport.get(request.transport)  # type: ignore[arg-type]

    async def start(self) -> None:
        """Accept connections now; aiohttp comes with the first one that needs it."""
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: HttpConnection(self), sock=self._sock, backlog=ACCEPT_BURST
        )
        deepen_listen_queue(self._sock)

    def wait_for_serving(self, connection: HttpConnection) -> None:
        self._waiting[connection] = None
        self.wants_serving(self.listener)

    def stop_waiting(self, connection: HttpConnection) -> None:
        self._waiting.pop(connection, None)

    async def serve(self, app: web.Application) -> None:
        """Serve `app` from now on, first to the connections that waited for it."""
        from agent_telemetryd.receivers.http_serving import HttpServing

        if self._drained or self.serving is not None:
            return
        serving = await HttpServing.start(self, app)
        if self._drained:  # the shutdown finished with this listener meanwhile
            await serving.cleanup()
            return
        self.serving = serving
        waiting, self._waiting = self._waiting, {}
        for connection in waiting:
            if connection.admitted:
                connection.hand_over(serving)

    def serving_failed(self) -> None:
        """aiohttp could not be set up: the connections that waited for it are closed
        (the next connection asks again)."""
        waiting, self._waiting = self._waiting, {}
        for connection in waiting:
            connection.close_now()

    async def stop_accepting(self, drain: Drain) -> None:
        """No new connections; idle keep-alive ones go at once, and a request under way
        finishes (its events commit before it answers) with `Connection: close`."""
        if not self.connections.accepting:
            return
        self.connections.accepting = False
        if self._owned_path is not None:
            with contextlib.suppress(FileNotFoundError):
                self._owned_path.unlink()
        if self._server is not None:
            self._server.close()
        for connection in list(self.connections.open):
            assert isinstance(connection, HttpConnection)
            connection.close_if_idle()

    async def drain(self, drain: Drain) -> None:
        """Wait for the requests under way, within the shutdown's deadline."""
        await self.stop_accepting(drain)
        await self.connections.wait_empty(drain)
        self._drained = True
        if self.serving is not None:
            await self.serving.cleanup()

    def route_of_request_line(self, data: bytes) -> str | None:
        """The route a request line names, if it is one of the app's fixed paths: the
        log may name a route, never what a client wrote (a query, a made-up path)."""
        if self.serving is None:
            return None  # named at the handover, when the routes are known
        end = data.find(b"\r\n", 0, _REQUEST_LINE_SCAN)
        parts = data[: end if end != -1 else _REQUEST_LINE_SCAN].split(b" ")
        if len(parts) < 2:
            return None
        path = parts[1].split(b"?", 1)[0].decode("ascii", "replace")
        return path if path in self.serving.plain_routes else None

    @property
    def request_errors(self) -> int:
        return self.error_lines.seen

    def stats(self) -> dict[str, Any]:
        return {**self.connections.stats(), "request_errors": self.request_errors}
