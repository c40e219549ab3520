"""Local analytics (DESIGN §13): the dashboard the daemon serves, and the report's data.

`attach` is the daemon part: it adds the dashboard routes to api.sock (no token: same
user only) and to the loopback TCP app (token required; Host/Origin already guarded).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from agent_telemetryd.context import DaemonContext


async def attach(
    context: DaemonContext, api_app: web.Application, tcp_app: web.Application
) -> Callable[[], Awaitable[None]]:
    from agent_telemetryd.dashboard.routes import Dashboard, routes

    dashboard = Dashboard(context)
    api_app.add_routes(routes(dashboard, token=False))
    tcp_app.add_routes(routes(dashboard, token=True))
    return dashboard.close
