"""Rules for requests that reach the daemon over HTTP (DESIGN §6).

A web page in the user's browser can reach 127.0.0.1 too. It must not be able to post
events or read data: a Host that is not a loopback name means DNS rebinding, and an
Origin that is not the daemon's own means another site. No wildcard CORS, ever.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable, Iterable

from aiohttp import web

from agent_telemetryd.config import is_loopback_ip
from agent_telemetryd.receivers.peer import is_same_user

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def host_name(host_header: str) -> str:
    """The name part of a Host header, without the port."""
    host = host_header.strip().lower()
    if host.startswith("["):
        end = host.find("]")
        return host[: end + 1] if end != -1 else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def is_loopback_host(host_header: str) -> bool:
    """`localhost`, or an address http_host may be set to: all of 127.0.0.0/8 and ::1
    (bracketed or not, with or without a port). A name that resolves to loopback is not
    enough: that is what DNS rebinding looks like."""
    name = host_name(host_header)
    if name == "localhost":
        return True
    if name.startswith("[") and name.endswith("]"):
        name = name[1:-1]
    return is_loopback_ip(name)


def loopback_guard(allowed_origins: Callable[[], Iterable[str]]) -> web.Middleware:
    """Refuse a non-loopback Host (403) and a foreign Origin (403) on the TCP listener."""

    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not is_loopback_host(request.headers.get("Host", "")):
            return _refuse("Host must be a loopback name (127.0.0.0/8, localhost, [::1])")
        origin = request.headers.get("Origin")
        if origin is not None and origin not in set(allowed_origins()):
            return _refuse("Origin not allowed: this endpoint does not accept cross-site requests")
        return await handler(request)

    return guard


def same_user_guard() -> web.Middleware:
    """On api.sock: only processes of the daemon's own uid (SO_PEERCRED / getpeereid)."""

    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        transport = request.transport
        sock = transport.get_extra_info("socket") if transport is not None else None
        if not is_same_user(sock):
            return _refuse("only the daemon's own user may use this socket")
        return await handler(request)

    return guard


def token_matches(given: str | None, expected: str) -> bool:
    """Constant-time: how long a wrong token took must not tell how close it was."""
    if not given:
        return False
    # Header bytes that are not UTF-8 arrive as surrogate escapes: a wrong token, not a 500.
    return hmac.compare_digest(
        given.encode("utf-8", "surrogateescape"), expected.encode("utf-8", "surrogateescape")
    )


def _refuse(reason: str) -> web.Response:
    return web.json_response({"error": reason}, status=403)
