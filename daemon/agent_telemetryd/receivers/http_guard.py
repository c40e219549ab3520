"""Rules for requests that reach the daemon over HTTP.

A web page in the user's browser can reach 127.0.0.1 too. It must not be able to post
events or read data: a Host that is not a loopback name means DNS rebinding, and an
Origin that is not the daemon's own means another site. No wildcard CORS, ever.

Other local users can reach 127.0.0.1 as well: on TCP their connections are refused by
owner uid where the kernel's socket table says it (receivers/tcp_peer.py), and posting
can be made to need the per-install token where it does not.
"""

from __future__ import annotations

import hmac
import os
import time
from collections.abc import Awaitable, Callable, Iterable

from aiohttp import web

from agent_telemetryd import api_deadline
from agent_telemetryd.config_values import is_loopback_ip
from agent_telemetryd.lazy_log import get_logger
from agent_telemetryd.log_budget import LogBudget
from agent_telemetryd.receivers.peer import is_same_user

log = get_logger("agent_telemetryd.http")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# Set by tcp_peer_guard on a request to a route whose clients carry the token in the body
# (a PostHog SDK sends its project key there and can add no header): the token that key
# must match, for the route to check once it has read the body.
BODY_TOKEN = web.RequestKey("body_token", str)


def host_name(host_header: str) -> str:
    """The name part of a Host header, without the port, and without the one trailing dot
    of a fully qualified name (`localhost.` is `localhost`)."""
    host = host_header.strip().lower()
    if host.startswith("["):
        end = host.find("]")
        return host[: end + 1] if end != -1 else host
    name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    return name.removesuffix(".") if ":" not in name else name


def is_loopback_host(host_header: str) -> bool:
    """`localhost`, or an address http_host may be set to: all of 127.0.0.0/8 and ::1
    (bracketed or not, with or without a port). A name that resolves to loopback is not
    enough: that is what DNS rebinding looks like. (`localhost.` and `127.0.0.1.` are
    the same names written in full: no one else's DNS answers for them.)"""
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
        host = request.headers.get("Host")
        # HTTP/1.0 may leave Host out (1.1 may not: aiohttp answers 400). Every browser
        # sends it, so a request without one is no page's, rebinding or not.
        if (host is not None or request.version >= (1, 1)) and not is_loopback_host(host or ""):
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


# Reading routes have nothing to undo: only requests that change something are bounded.
_READING = frozenset({"GET", "HEAD", "OPTIONS"})


def deadline_guard() -> web.Middleware:
    """On api.sock: refuse (408), without effect, a command that arrives after the deadline
    it was sent with (api_deadline.py): its command has told the user it failed."""

    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        # A path or method no route takes is answered 404/405 as it is: it had no effect
        # to refuse, and a "not applied, run it again" would send the user round in circles.
        if request.method not in _READING and request.match_info.http_exception is None:
            late = late_answer(request)
            if late is not None:
                return late
        return await handler(request)

    return guard


def late_answer(request: web.Request) -> web.Response | None:
    """The refusal of a request whose deadline has passed, or None while there is time.
    Also asked by a handler that waited (for an upload to finish) before acting."""
    late = api_deadline.seconds_late(request.headers.get(api_deadline.HEADER), time.time())
    if late is None:
        return None
    # The route's pattern, not the path: a log line holds nothing a client wrote.
    resource = request.match_info.route.resource
    route = resource.canonical if resource is not None else None
    log.warning("late_command_refused", route=route, seconds_late=round(late, 1))
    return web.json_response(
        {
            "error": "the command reached the daemon after its deadline (the daemon was "
            "stopped or busy), so it was NOT applied; run it again"
        },
        status=408,
    )


def tcp_peer_guard(
    *,
    uid_of: Callable[[web.Request], Awaitable[int | None]] | None,
    token: Callable[[], str] | None,
    body_token_paths: frozenset[str] = frozenset(),
) -> web.Middleware:
    """On loopback TCP: refuse (403) a connection another user opened, when `uid_of` can
    tell; and when `token` is given, refuse (401/403) a POST without the per-install token
    (`Authorization: Bearer …` or `?token=`), except to `body_token_paths`, which check it
    in the body themselves (BODY_TOKEN). Reading routes do their own token check."""
    refusal_lines = LogBudget()

    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        if uid_of is not None:
            uid = await uid_of(request)
            if uid != os.geteuid():
                if refusal_lines.allows():
                    log.warning(
                        "foreign_peer_refused",
                        peer_uid=uid,
                        socket="tcp",
                        refused_so_far=refusal_lines.seen,
                    )
                return _refuse("only the daemon's own user may use this port")
        if token is not None and request.method == "POST":
            given = given_token(request)
            if given:
                if not token_matches(given, token()):
                    return _refuse("wrong token")
            elif request.path in body_token_paths:
                request[BODY_TOKEN] = token()
            else:
                return web.json_response(
                    {"error": "posting here needs the per-install token (http_require_token)"},
                    status=401,
                    headers={"WWW-Authenticate": "Bearer"},
                )
        return await handler(request)

    return guard


def given_token(request: web.Request) -> str | None:
    """The token a request carries: `Authorization: Bearer …`, else `?token=`."""
    bearer = bearer_token(request.headers.get("Authorization", ""))
    return bearer if bearer is not None else request.query.get("token")


def bearer_token(authorization: str) -> str | None:
    """The token of an `Authorization: Bearer …` value (a header, or gRPC metadata)."""
    return authorization[7:].strip() if authorization[:7].lower() == "bearer " else None


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
