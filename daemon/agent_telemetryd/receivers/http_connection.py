"""HTTP connections on api.sock and loopback TCP: a budget, timeouts, quiet errors, a drain.

aiohttp's `RequestHandler` does the HTTP; `HttpConnection` stands between it and the
transport and knows where each connection is: idle (nothing of a request yet, or between
keep-alive requests), reading a request's headers, or inside a request. Each has its own
timeout, so a connection that never sends, dribbles its headers or stalls its body is
closed, and a request whose body has arrived is never cut while its events commit.

The handler is made here, not by aiohttp's site, so that it gets a logger of this
connection's own: aiohttp logs a malformed request (a bad header value, URL or chunk-size
line) with an exception whose text quotes the offending bytes, and a traceback, a dozen
lines each. Here it is one line with the error's type and the route pattern.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import socket
import traceback
from pathlib import Path
from typing import Any

import structlog
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from agent_telemetryd.receivers.connections import (
    ACCEPT_BURST,
    ConnectionLimits,
    Drain,
    ListenerConnections,
    deepen_listen_queue,
)

log = structlog.get_logger("agent_telemetryd.http")

# After the drain, what is left of a request gets this long before aiohttp cancels it.
CLEANUP_SECONDS = 1.0
# Reading the rest of a refused body (413) so the client sees the answer, not a reset.
LINGER_SECONDS = 2.0
_BUSY_BODY = b'{"error": "too many connections to the daemon; retry shortly"}'
BUSY_RESPONSE = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
    b"Retry-After: 1\r\nConnection: close\r\nContent-Length: "
    + str(len(_BUSY_BODY)).encode()
    + b"\r\n\r\n"
    + _BUSY_BODY
)
# The first hundred request errors are logged, then every thousandth: one bad client in a
# loop must not fill the journal. `status` has the counts.
_LOG_FIRST = 100
_LOG_EVERY = 1000
_REQUEST_LINE_SCAN = 8192


class Phase(enum.Enum):
    IDLE = "idle"
    HEADERS = "headers"
    REQUEST = "request"


class HttpConnection(asyncio.Protocol):
    """One accepted connection: admitted within the budget, timed, handed to aiohttp."""

    def __init__(self, site: HttpSite) -> None:
        self.site = site
        self.transport: asyncio.Transport | None = None
        self.handler: web.RequestHandler | None = None
        self.phase = Phase.IDLE
        self.route: str | None = None
        self.peer_uid: int | None = None
        self.peer_known = False
        self.ended_by_daemon = False  # a timeout or the shutdown closed it
        self.lost_in_request = False
        self._timer: asyncio.TimerHandle | None = None
        self._request: web.BaseRequest | None = None

    # --- asyncio.Protocol --------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        if not self.site.connections.admit(self):
            transport.write(BUSY_RESPONSE)
            transport.close()
            return
        self.site.by_transport[transport] = self
        self.handler = self.site.new_handler(self)
        self.handler.connection_made(transport)
        self._arm(self.site.limits.idle_timeout, self._idle_expired)

    def data_received(self, data: bytes) -> None:
        if self.handler is None:
            return
        if self.phase is Phase.IDLE:
            self.phase = Phase.HEADERS
            self.route = self.site.route_of_request_line(data)
            self._arm(self.site.limits.header_timeout, self._expired)
        self.handler.data_received(data)

    def eof_received(self) -> bool | None:
        return self.handler.eof_received() if self.handler is not None else None

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        handler, self.handler = self.handler, None
        if handler is None:
            return
        assert self.transport is not None
        self.site.by_transport.pop(self.transport, None)
        self.site.connections.release(self)
        if self.phase is Phase.REQUEST and not self.ended_by_daemon:
            # The client left before its answer (mid-body, say): counted, not logged.
            self.lost_in_request = True
            self.site.connections.client_gone += 1
        handler.connection_lost(exc)

    def pause_writing(self) -> None:
        if self.handler is not None:
            self.handler.pause_writing()

    def resume_writing(self) -> None:
        if self.handler is not None:
            self.handler.resume_writing()

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
        if self.handler is None:
            return
        self.phase = Phase.IDLE
        self._arm(self.site.limits.idle_timeout, self._idle_expired)

    def close_if_idle(self) -> None:
        """Let an idle keep-alive connection go; one in a request finishes it first."""
        if self.handler is not None and self.phase is Phase.IDLE:
            self.ended_by_daemon = True
            # aiohttp's own close: a response still being written is written first.
            self.handler.close()

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


class _ConnectionLog:
    """Stands in for aiohttp's `aiohttp.server` logger on one connection (see the module
    docstring): whatever aiohttp reports becomes at most one line, with no request data."""

    def __init__(self, connection: HttpConnection) -> None:
        self._connection = connection

    def debug(self, *args: Any, **kwargs: Any) -> None:
        """aiohttp's debug lines: non-HTTP bytes on the port, premature disconnections."""

    def info(self, *args: Any, **kwargs: Any) -> None:
        """Nothing aiohttp says at info level concerns a request's fate."""

    def warning(self, *args: Any, exc_info: Any = None, **kwargs: Any) -> None:
        self._connection.site.report_error(self._connection, _exception_of(exc_info))

    def exception(self, *args: Any, exc_info: Any = None, **kwargs: Any) -> None:
        self._connection.site.report_error(self._connection, _exception_of(exc_info))

    error = exception


def _exception_of(exc_info: Any) -> BaseException | None:
    if isinstance(exc_info, BaseException):
        return exc_info
    if isinstance(exc_info, tuple) and len(exc_info) == 3:
        return exc_info[1]
    return None


def _where(error: BaseException) -> str | None:
    """The innermost frame as file:line function: enough to find a bug, no values."""
    frames = traceback.extract_tb(error.__traceback__)
    if not frames:
        return None
    frame = frames[-1]
    return f"{Path(frame.filename).name}:{frame.lineno} {frame.name}"


class HttpSite:
    """One HTTP listener: its socket, its budget, and the aiohttp app behind it."""

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
        self._sock = sock
        self._owned_path = owned_path  # a socket file this daemon made, else None
        self._runner: web.AppRunner | None = None
        self._server: asyncio.Server | None = None
        self._plain_routes: frozenset[str] = frozenset()
        self._errors = 0

    @property
    def middleware(self) -> web.Middleware:
        """Outermost middleware of the app: tells each connection where its request is."""
        site = self

        @web.middleware
        async def track_connection(request: web.Request, handler: Any) -> web.StreamResponse:
            connection = site.by_transport.get(request.transport)  # type: ignore[arg-type]
            if connection is None:
                return await handler(request)
            connection.request_began(request)
            try:
                response = await handler(request)
            except (ConnectionError, web.RequestPayloadError):
                if not (connection.lost_in_request or connection.ended_by_daemon):
                    raise
                # The client left (or was timed out) mid-request: already counted; the
                # answer goes nowhere, so nothing to log either.
                return web.Response(status=400)
            finally:
                connection.request_ended()
            if not site.connections.accepting:
                response.force_close()  # stopping: this connection's last request
            elif request.content.exception() is not None:
                # The body failed in aiohttp's parser (a corrupt gzip stream, a broken
                # chunk): the parser's place in the byte stream is lost, and a next request
                # on this connection would never be read. Answer, then close.
                response.force_close()
            return response

        return track_connection

    def connection_of(self, request: web.Request) -> HttpConnection | None:
        return self.by_transport.get(request.transport)  # type: ignore[arg-type]

    async def start(self, app: web.Application) -> None:
        runner = web.AppRunner(
            app, handle_signals=False, access_log=None, shutdown_timeout=CLEANUP_SECONDS
        )
        await runner.setup()
        self._runner = runner
        self._plain_routes = frozenset(
            resource.canonical
            for resource in app.router.resources()
            if isinstance(resource, web.PlainResource)
        )
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: HttpConnection(self), sock=self._sock, backlog=ACCEPT_BURST
        )
        deepen_listen_queue(self._sock)

    def new_handler(self, connection: HttpConnection) -> web.RequestHandler:
        assert self._runner is not None and self._runner.server is not None
        limits = self.limits
        return web.RequestHandler(
            self._runner.server,
            loop=asyncio.get_running_loop(),
            # The connection's own timers decide; aiohttp's must never fire first.
            keepalive_timeout=limits.idle_timeout + limits.header_timeout + 60,
            access_log=None,
            logger=_ConnectionLog(connection),  # type: ignore[arg-type]
            lingering_time=LINGER_SECONDS,
        )

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
        if self._runner is not None:
            await self._runner.cleanup()

    def route_of_request_line(self, data: bytes) -> str | None:
        """The route a request line names, if it is one of the app's fixed paths: the
        log may name a route, never what a client wrote (a query, a made-up path)."""
        end = data.find(b"\r\n", 0, _REQUEST_LINE_SCAN)
        parts = data[: end if end != -1 else _REQUEST_LINE_SCAN].split(b" ")
        if len(parts) < 2:
            return None
        path = parts[1].split(b"?", 1)[0].decode("ascii", "replace")
        return path if path in self._plain_routes else None

    def report_error(self, connection: HttpConnection, error: BaseException | None) -> None:
        """One line per failed request, for the first hundred and then every thousandth:
        the error's type and the route, never the request's bytes, headers or URL."""
        if connection.lost_in_request or connection.ended_by_daemon:
            return  # counted already; the client is gone
        self._errors += 1
        n = self._errors
        if n > _LOG_FIRST and n % _LOG_EVERY:
            return
        client_fault = isinstance(error, HttpProcessingError | web.RequestPayloadError)
        fields: dict[str, Any] = {
            "listener": self.listener,
            "route": connection.route,
            "error_type": type(error).__name__ if error is not None else None,
            "failed_so_far": n,
        }
        if client_fault:
            log.warning("http_request_malformed", **fields)
        else:
            where = _where(error) if error is not None else None
            log.error("http_request_failed", where=where, **fields)

    def stats(self) -> dict[str, Any]:
        return {**self.connections.stats(), "request_errors": self._errors}
