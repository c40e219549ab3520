"""The daemon's aiohttp apps, built when the first HTTP connection arrives.

api.sock's app (the CLI's API, same user only) and the loopback TCP port's (events,
PostHog capture, OTLP, the dashboard with its token; Host/Origin and peer guards), each
with the routes the daemon's parts add, and the apps of the listeners the parts opened
(OTLP's port). Importing this module imports aiohttp.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from aiohttp import web

from agent_telemetryd.context import DaemonContext
from agent_telemetryd.receivers import api_routes, http_ingest, otlp_routes, posthog_capture
from agent_telemetryd.receivers.debug_routes import routes as debug_routes
from agent_telemetryd.receivers.http_connection import HttpSite
from agent_telemetryd.receivers.sites import Sites
from agent_telemetryd.web_context import CONTEXT

if TYPE_CHECKING:
    from agent_telemetryd.parts import AddRoutes


def build_apps(
    context: DaemonContext, sites: Sites, part_routes: Sequence[AddRoutes]
) -> list[tuple[HttpSite, web.Application]]:
    """Every HTTP listener with the app it serves."""
    api_app = ingest_app(context, sites.api_middlewares())
    api_app.add_routes(api_routes.routes)
    api_app.add_routes(debug_routes)
    tcp_app = ingest_app(
        context,
        sites.tcp_middlewares(lambda: allowed_origins(context), lambda: context.dashboard_token),
    )
    for add_routes in part_routes:
        add_routes(api_app, tcp_app)
    built = [(sites.api, api_app)]
    if sites.tcp is not None:
        built.append((sites.tcp, tcp_app))
    built.extend((site, make_app()) for site, make_app in sites.added)
    return built


def ingest_app(context: DaemonContext, middlewares: list[web.Middleware]) -> web.Application:
    """An app taking events: POST /v1/events, PostHog capture and OTLP."""
    app = web.Application(middlewares=middlewares, client_max_size=http_ingest.MAX_BODY_BYTES)
    app[CONTEXT] = context
    app.add_routes(http_ingest.routes)
    app.add_routes(posthog_capture.routes)
    otlp_routes.add_to(app, context.otlp)
    return app


def allowed_origins(context: DaemonContext) -> list[str]:
    """The Origins the TCP port accepts: its own URL, by address and as localhost."""
    url = context.http_url
    if not url:
        return []
    port = url.rsplit(":", 1)[1]
    return [url, f"http://localhost:{port}"]
