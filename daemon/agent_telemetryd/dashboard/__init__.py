"""Local analytics: the dashboard the daemon serves, and the report's data.

`start` is the daemon part: its routes step adds the dashboard routes to api.sock (no token: same
user only) and to the loopback TCP app (token required; Host/Origin already guarded).
It registers the paths only: the dashboard's modules (views, aggregates, the page and its
assets) are loaded on the first request, so a daemon nobody looks at does not carry them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from agent_telemetryd.parts import Started

if TYPE_CHECKING:
    from aiohttp import web

    from agent_telemetryd.context import DaemonContext

    Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# The paths `routes.routes()` serves, on both listeners; the last on api.sock only.
# tests/test_lazy_imports.py holds them equal.
PATHS = (
    "/dashboard",
    "/dashboard/",
    "/dashboard/assets/{name}",
    "/dashboard/api/{name}",
    "/dashboard/api/run/{trace_id}",
)
API_SOCKET_ONLY = ("/dashboard/url",)


class LazyDashboard:
    """Stands in for `routes.Dashboard` until the first request makes the real one."""

    def __init__(self, context: DaemonContext) -> None:
        self._context = context
        self._dashboard: Any = None  # routes.Dashboard, once loaded
        self._handlers: dict[bool, dict[str, Handler]] = {}

    def handler(self, *, token: bool) -> Handler:
        async def handle(request: web.Request) -> web.StreamResponse:
            handlers = self._handlers.get(token) or self._load(token)
            return await handlers[request.match_info.route.resource.canonical](request)

        return handle

    def _load(self, token: bool) -> dict[str, Handler]:
        from agent_telemetryd.dashboard.routes import Dashboard, routes

        if self._dashboard is None:
            self._dashboard = Dashboard(self._context)
        loaded = {route.path: route.handler for route in routes(self._dashboard, token=token)}
        self._handlers[token] = loaded
        return loaded

    async def close(self) -> None:
        if self._dashboard is not None:
            await self._dashboard.close()


async def start(context: DaemonContext) -> Started:
    dashboard = LazyDashboard(context)

    def add_routes(api_app: web.Application, tcp_app: web.Application) -> None:
        for app, token in ((api_app, False), (tcp_app, True)):
            paths = PATHS if token else PATHS + API_SOCKET_ONLY
            handle = dashboard.handler(token=token)
            for path in paths:
                app.router.add_get(path, handle)

    return Started(close=dashboard.close, add_routes=add_routes)
