"""The optional OTLP listeners, as a part of the daemon: both off unless configured.

- `otlp_http_port`: a second loopback HTTP listener serving only the OTLP routes (and
  `/healthz`), for exporters that assume OTLP's standard port 4318. Off by default, so
  the daemon never takes that port from a real collector. The main port's rules: the
  Host/Origin guard (its own origin is the only one allowed), other local users refused
  by the owner uid of their connection, the token where `http_require_token` asks for
  it, and a connection budget and timeouts of its own. The daemon starts, counts
  (`status`: connections.otlp_http) and drains it with its own listeners.
- `otlp_grpc_port`: OTLP/gRPC (the `[otlp-grpc]` extra), imported only then; the same
  checks of the peer, and a budget and timeouts of its own.

Both share the main port's OTLP state, and `status --json` shows where they listen under
`otlp`.

Neither is needed for anything else: a port that cannot be listened on (a collector already
holds 4318) or gRPC configured without its extra leaves that listener out, with one warning
line, and the daemon runs the rest: ingest.sock, api.sock and the main port. `status` says
why under `otlp` (`http_unavailable`, `grpc_unavailable`), as it does for the main port, and
`doctor` fails its `otlp` check with the fix.
"""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING, Any

from agent_telemetryd.context import DaemonContext
from agent_telemetryd.lazy_log import get_logger
from agent_telemetryd.otlp.grpc_extra import GRPC_MISSING
from agent_telemetryd.parts import Closer, Started
from agent_telemetryd.receivers.sites import Sites

if TYPE_CHECKING:
    from aiohttp import web

    from agent_telemetryd.receivers.otlp_grpc import GrpcReceiver

log = get_logger("agent_telemetryd.otlp")


async def start(context: DaemonContext) -> Started:
    """Start the OTLP listeners the config asks for (OTLP/HTTP's is served by the daemon
    with its own listeners, its app built with theirs); leave out, and say why, one that
    cannot be."""
    config = context.config
    sites = context.sites
    assert sites is not None
    closers: list[Closer] = []
    where: dict[str, str] = {}  # "http": its URL, "grpc": host:port, as listened on
    unavailable: dict[str, str] = {}  # "http_unavailable"/"grpc_unavailable": why not

    async def close() -> None:
        for closer in reversed(closers):
            await closer()

    try:
        if config.otlp_http_port is not None:
            try:
                sock = _bind(config.http_host, config.otlp_http_port)
            except Unavailable as error:
                _left_out(unavailable, "http", config.otlp_http_port, error)
            else:
                closers.append(_closing(sock))
                where["http"] = _serve_http(context, sites, sock)
        if config.otlp_grpc_port is not None:
            try:
                receiver = await _start_grpc(context, sites, config.otlp_grpc_port)
            except Unavailable as error:
                _left_out(unavailable, "grpc", config.otlp_grpc_port, error)
            else:
                closers.append(receiver.stop)
                where["grpc"] = receiver.address
    except BaseException:
        await close()
        raise

    async def status_section() -> dict[str, Any]:
        return {"otlp": {**where, **unavailable}}

    context.status_sections.append(status_section)
    return Started(close=close)


class Unavailable(RuntimeError):
    """An OTLP listener cannot be had; the message says which, why and the fix."""


def _left_out(unavailable: dict[str, str], transport: str, port: int, error: Unavailable) -> None:
    """Note why the `transport` listener is missing, for `status`, in one warning line (the
    port and the reason, nothing of any event): the rest of the daemon goes on."""
    unavailable[f"{transport}_unavailable"] = str(error)
    log.warning(
        "otlp_listener_unavailable", listener=f"otlp_{transport}", port=port, reason=str(error)
    )


async def _start_grpc(context: DaemonContext, sites: Sites, port: int) -> GrpcReceiver:
    """The gRPC receiver on `port`. Unavailable without the extra (imported only here, so
    a daemon not asked for gRPC never loads it) or when the port cannot be listened on."""
    try:
        from agent_telemetryd.receivers import otlp_grpc
    except ImportError:
        raise Unavailable(GRPC_MISSING) from None
    host = context.config.http_host
    try:
        return await otlp_grpc.start(context, context.otlp, sites, host, port)
    except otlp_grpc.BindError as error:
        raise Unavailable(str(error)) from None


def _serve_http(context: DaemonContext, sites: Sites, sock: socket.socket) -> str:
    """Hand the daemon a listener on `sock` serving OTLP behind the main port's guards, to
    start with its own listeners; returns the listener's URL."""
    bound_host, bound_port = sock.getsockname()[:2]
    shown = f"[{bound_host}]" if ":" in bound_host else bound_host
    url = f"http://{shown}:{bound_port}"
    own_origins = [url, f"http://localhost:{bound_port}"]
    site = sites.add_tcp_site("otlp_http", sock)

    def make_app() -> web.Application:
        from aiohttp import web

        from agent_telemetryd.receivers import http_ingest, otlp_routes
        from agent_telemetryd.web_context import CONTEXT

        app = web.Application(
            middlewares=sites.tcp_middlewares(
                lambda: own_origins, lambda: context.dashboard_token, site
            ),
            client_max_size=http_ingest.MAX_BODY_BYTES,
        )
        app[CONTEXT] = context
        otlp_routes.add_to(app, context.otlp)
        app.router.add_get("/healthz", http_ingest.healthz)
        return app

    sites.added.append((site, make_app))
    return url


def _closing(sock: socket.socket) -> Closer:
    """The listening socket, closed when the part stops (the daemon's drain has closed it
    already, unless the start failed before the daemon served it)."""

    async def close() -> None:
        sock.close()

    return close


def _bind(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as error:
        sock.close()
        raise Unavailable(
            f"cannot listen for OTLP/HTTP on {host}:{port}: {error.strerror} (a collector"
            " may hold it; set AGENT_TELEMETRY_OTLP_HTTP_PORT to another port, 0, or off)"
        ) from None
    sock.listen(512)
    sock.setblocking(False)
    return sock
