"""aiohttp behind one HTTP listener: its app's runner, a request handler per connection,
the middleware that tells each connection where its request is, and quiet errors.

Loaded with aiohttp, when the first HTTP connection arrives (http_connection.py says why).

The handler is made here, not by aiohttp's site, so that it gets a logger of this
connection's own: aiohttp logs a malformed request (a bad header value, URL or chunk-size
line) with an exception whose text quotes the offending bytes, and a traceback, a dozen
lines each. Here it is one line with the error's type and the route pattern. The answer
to such a request is aiohttp's too, and its text quotes the same bytes (a header's value,
a URL with its query, a token in it); here it is a JSON error that says what kind of thing
was wrong, and nothing the client sent.
"""

from __future__ import annotations

import asyncio
import traceback
from pathlib import Path
from typing import Any

from aiohttp import http_exceptions, web
from aiohttp.http_exceptions import HttpProcessingError

from agent_telemetryd.lazy_log import get_logger
from agent_telemetryd.receivers.http_connection import HttpConnection, HttpSite

log = get_logger("agent_telemetryd.http")

# After the drain, what is left of a request gets this long before aiohttp cancels it.
CLEANUP_SECONDS = 1.0
# Reading the rest of a refused body (413) so the client sees the answer, not a reset.
LINGER_SECONDS = 2.0


class HttpServing:
    """One listener's app, set up, and the handlers of its connections."""

    def __init__(self, site: HttpSite, runner: web.AppRunner, plain_routes: frozenset[str]):
        self._site = site
        self._runner = runner
        self.plain_routes = plain_routes

    @classmethod
    async def start(cls, site: HttpSite, app: web.Application) -> HttpServing:
        runner = web.AppRunner(
            app, handle_signals=False, access_log=None, shutdown_timeout=CLEANUP_SECONDS
        )
        await runner.setup()
        plain_routes = frozenset(
            resource.canonical
            for resource in app.router.resources()
            if isinstance(resource, web.PlainResource)
        )
        return cls(site, runner, plain_routes)

    def new_handler(self, connection: HttpConnection) -> web.RequestHandler:
        assert self._runner.server is not None
        limits = self._site.limits
        return _RequestHandler(
            self._runner.server,
            loop=asyncio.get_running_loop(),
            # The connection's own timers decide; aiohttp's must never fire first.
            keepalive_timeout=limits.idle_timeout + limits.header_timeout + 60,
            access_log=None,
            logger=_ConnectionLog(connection),  # type: ignore[arg-type]
            lingering_time=LINGER_SECONDS,
        )

    async def cleanup(self) -> None:
        await self._runner.cleanup()


# What was wrong with a request aiohttp could not parse, by the error's type (the first
# that matches): what the client reads instead of aiohttp's text, which quotes its bytes.
_MALFORMED: tuple[tuple[type[BaseException], str], ...] = (
    (http_exceptions.LineTooLong, "the request line or a header is too long (8190 bytes at most)"),
    (http_exceptions.InvalidURLError, "the request's URL is malformed"),
    (http_exceptions.BadStatusLine, "the request line is malformed"),
    (http_exceptions.InvalidHeader, "a header is malformed"),
    (http_exceptions.TransferEncodingError, "the chunked body is malformed"),
    (http_exceptions.ContentLengthError, "the body does not match its Content-Length"),
    (http_exceptions.PayloadEncodingError, "the body does not decode as its Content-Encoding"),
)
UNSUPPORTED_ENCODING = (
    "this Content-Encoding is not supported: send the body as it is, or with gzip or deflate"
)


def error_answer(status: int, error: BaseException | None) -> web.Response:
    """The answer to a request that failed outside the routes: what kind of thing was
    wrong, never a byte of the request; the connection closes after it, as aiohttp's."""
    if isinstance(error, http_exceptions.ContentEncodingError):
        # Raised at the headers, for an encoding aiohttp cannot undo here (br, zstd
        # without their modules): 415 is the status that says "send it otherwise".
        status, reason = 415, UNSUPPORTED_ENCODING
    elif status >= 500:
        reason = "the daemon failed on this request; its log has a line about it"
    else:
        reason = next(
            (text for kind, text in _MALFORMED if isinstance(error, kind)),
            "the request is not valid HTTP",
        )
    response = web.json_response({"error": reason}, status=status)
    response.force_close()
    return response


class _RequestHandler(web.RequestHandler):
    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        # aiohttp's own logs the error (to _ConnectionLog) and refuses when an answer was
        # begun; its answer is replaced, since `message` quotes the request.
        super().handle_error(request, status, exc)
        return error_answer(status, exc)


def track_connection(site: HttpSite) -> web.Middleware:
    """Outermost middleware of a listener's app: tells each connection where its request is."""

    @web.middleware
    async def track(request: web.Request, handler: Any) -> web.StreamResponse:
        connection = site.connection_of(request)
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

    return track


def report_error(connection: HttpConnection, error: BaseException | None) -> None:
    """One line per failed request, as far as the site's log budget goes (log_budget.py):
    the error's type and the route, never the request's bytes, headers or URL."""
    if connection.lost_in_request or connection.ended_by_daemon:
        return  # counted already; the client is gone
    site = connection.site
    if not site.error_lines.allows():
        return
    client_fault = isinstance(error, HttpProcessingError | web.RequestPayloadError)
    fields: dict[str, Any] = {
        "listener": site.listener,
        "route": connection.route,
        "error_type": type(error).__name__ if error is not None else None,
        "failed_so_far": site.request_errors,
    }
    if client_fault:
        log.warning("http_request_malformed", **fields)
    else:
        where = _where(error) if error is not None else None
        log.error("http_request_failed", where=where, **fields)


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
        report_error(self._connection, _exception_of(exc_info))

    def exception(self, *args: Any, exc_info: Any = None, **kwargs: Any) -> None:
        report_error(self._connection, _exception_of(exc_info))

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
