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
"""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING, Any

from agent_telemetryd.context import DaemonContext
from agent_telemetryd.listeners import ListenError
from agent_telemetryd.parts import Closer, Started
from agent_telemetryd.receivers.sites import Sites

if TYPE_CHECKING:
    from aiohttp import web

GRPC_MISSING = (
    "otlp_grpc_port is set but gRPC support is not installed;"
    " install it with: pip install 'agent-telemetry[otlp-grpc]'"
)


async def start(context: DaemonContext) -> Started:
    """Start the OTLP listeners the config asks for (OTLP/HTTP's is served by the daemon
    with its own listeners, its app built with theirs)."""
    config = context.config
    state = context.otlp
    sites = context.sites
    assert sites is not None
    closers: list[Closer] = []
    where: dict[str, str] = {}

    async def close() -> None:
        for closer in reversed(closers):
            await closer()

    try:
        if config.otlp_http_port is not None:
            sock = _bind(config.http_host, config.otlp_http_port)
            closers.append(_closing(sock))
            where["http"] = _serve_http(context, sites, sock)
        if config.otlp_grpc_port is not None:
            try:
                from agent_telemetryd.receivers import otlp_grpc
            except ImportError:
                raise ListenError(GRPC_MISSING) from None
            try:
                receiver = await otlp_grpc.start(
                    context, state, sites, config.http_host, config.otlp_grpc_port
                )
            except otlp_grpc.BindError as error:
                raise ListenError(str(error)) from None
            closers.append(receiver.stop)
            where["grpc"] = receiver.address
    except BaseException:
        await close()
        raise

    async def status_section() -> dict[str, Any]:
        return {"otlp": dict(where)}

    context.status_sections.append(status_section)
    return Started(close=close)


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
        raise ListenError(
            f"cannot listen for OTLP/HTTP on {host}:{port}: {error.strerror} (a collector"
            " may hold it; set AGENT_TELEMETRY_OTLP_HTTP_PORT to another port, 0, or off)"
        ) from None
    sock.listen(512)
    sock.setblocking(False)
    return sock
