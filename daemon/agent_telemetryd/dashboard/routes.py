"""HTTP routes of the dashboard, on api.sock and (behind the token) on loopback TCP.

On TCP the Host/Origin guard has already run (http_guard.loopback_guard); here every
data route also needs the per-install token, as `?token=` or
`Authorization: Bearer`: none is 401, a wrong one 403 (compared in constant time).
api.sock needs no token: only the daemon's own user can connect to it.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web

from agent_telemetryd.analytics.prices import PriceBook, price_book
from agent_telemetryd.context import DaemonContext
from agent_telemetryd.dashboard import page, views
from agent_telemetryd.dashboard.agent_views import AgentQuery
from agent_telemetryd.dashboard.filters import Filters
from agent_telemetryd.lazy_log import get_logger
from agent_telemetryd.receivers.api_routes import current_status
from agent_telemetryd.receivers.http_guard import token_matches
from agent_telemetryd.store import analytics_facts, analytics_fold, dashboard_sql

log = get_logger("agent_telemetryd.dashboard")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# Fold in the background once this many events wait; below it the live tail is cheap.
FOLD_AFTER = 2_000
NO_STORE = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
}


def unfolded(conn: sqlite3.Connection) -> int:
    """Events the slower of the two folds (the dashboard's, the agent analytics') has not
    reached."""
    return max(dashboard_sql.unfolded(conn), analytics_facts.unfolded(conn))


class Dashboard:
    def __init__(self, context: DaemonContext) -> None:
        self.context = context
        self._fold_task: asyncio.Task[None] | None = None
        self._prices: tuple[Any, PriceBook] | None = None

    def prices(self) -> PriceBook:
        """The shipped price table with the running config's overrides (a reload may
        change them; costs are priced when read, so past events follow)."""
        overrides = self.context.config.prices
        if self._prices is None or self._prices[0] != overrides:
            self._prices = (overrides, price_book(overrides))
        return self._prices[1]

    async def _read(self, read: Callable[[sqlite3.Connection | None], Any]) -> Any:
        """`read` on the reader thread (None: no buffer); folds in the background when
        enough events wait."""
        buffer = self.context.buffer
        if buffer is None:
            return read(None)
        data, waiting = await buffer.read(lambda conn: (read(conn), unfolded(conn)))
        if waiting >= FOLD_AFTER:
            self._start_fold()
        return data

    async def agent_view(self, name: str, query: AgentQuery) -> dict[str, Any]:
        return dict(await self._read(lambda conn: views.read_agent_view(name, conn, query)))

    async def run(self, trace_id: str) -> dict[str, Any]:
        return dict(await self._read(lambda conn: views.read_run(conn, trace_id)))

    async def view(self, name: str, f: Filters) -> dict[str, Any]:
        prices = self.prices()
        data = await self._read(lambda conn: views.read_view(name, conn, f, prices))
        if name in views.WITH_HEALTH:
            status = await current_status(self.context)
            data["health"] = views.health(status)
            data["http_url"] = self.context.http_url
            data["generated_ms"] = int(time.time() * 1000)
        return data

    def _start_fold(self) -> None:
        if self._fold_task is None or self._fold_task.done():
            self._fold_task = asyncio.get_running_loop().create_task(self._fold(), name="fold")

    async def _fold(self) -> None:
        # A chunk per writer job, so group commits of new events slot in between; the
        # dashboard's rollups and the agent analytics' take turns, each its own job.
        total = 0
        try:
            while self.context.buffer is not None:
                done = 0
                for fold in (dashboard_sql.fold, analytics_fold.fold):
                    done += await self.context.buffer.writer.run(fold)
                total += done
                if done == 0:
                    break
        except Exception as error:  # a failed fold only costs speed: queries read the tail
            log.error("dashboard_fold_failed", reason=str(error))
        if total:
            log.info("dashboard_folded", events=total)

    async def close(self) -> None:
        if self._fold_task is not None:
            self._fold_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._fold_task


def _given_token(request: web.Request) -> str | None:
    auth = request.headers.get("Authorization", "")
    if auth[:7].lower() == "bearer ":
        return auth[7:].strip()
    return request.query.get("token")


def _refusal(request: web.Request, expected: str) -> web.Response | None:
    given = _given_token(request)
    if not given:
        return web.json_response(
            {"error": "the dashboard needs its token: run `agent-telemetry dashboard`"},
            status=401,
            headers={**NO_STORE, "WWW-Authenticate": "Bearer"},
        )
    if not token_matches(given, expected):
        return web.json_response({"error": "wrong dashboard token"}, status=403, headers=NO_STORE)
    return None


async def get_page(request: web.Request) -> web.Response:
    return web.Response(
        text=page.live_page(),
        content_type="text/html",
        headers={**NO_STORE, "Content-Security-Policy": page.LIVE_CSP},
    )


async def get_asset(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    if name not in page.ASSETS:
        raise web.HTTPNotFound()
    return web.Response(
        text=page.asset(name),
        content_type=page.ASSETS[name],
        headers={"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"},
    )


def routes(dashboard: Dashboard, *, token: bool) -> list[web.RouteDef]:
    """The routes for one listener; `token=True` on TCP."""

    def guarded(handler: Handler) -> Handler:
        async def run(request: web.Request) -> web.StreamResponse:
            if token:
                refused = _refusal(request, dashboard.context.dashboard_token)
                if refused is not None:
                    return refused
            return await handler(request)

        return run

    async def get_view(request: web.Request) -> web.Response:
        return await _view_response(dashboard, request)

    async def get_run(request: web.Request) -> web.Response:
        try:
            data = await dashboard.run(request.match_info["trace_id"])
        except ValueError as error:
            return web.json_response({"error": str(error)}, status=400, headers=NO_STORE)
        return web.json_response(data, dumps=_dumps, headers=NO_STORE)

    async def get_url(request: web.Request) -> web.Response:
        base = dashboard.context.http_url
        url = f"{base}/dashboard?token={dashboard.context.dashboard_token}" if base else None
        return web.json_response({"url": url}, headers=NO_STORE)

    # The tokenised URL, for `agent-telemetry dashboard`: api.sock only (same user).
    own = [] if token else [web.get("/dashboard/url", get_url)]
    return [
        *own,
        # The page holds no data (its script asks the API, with the token): a reload or a
        # bookmark, whose address no longer carries the token, still finds it.
        web.get("/dashboard", get_page),
        web.get("/dashboard/", get_page),
        web.get("/dashboard/assets/{name}", get_asset),
        web.get("/dashboard/api/run/{trace_id}", guarded(get_run)),
        web.get("/dashboard/api/{name}", guarded(get_view)),
    ]


async def _view_response(dashboard: Dashboard, request: web.Request) -> web.Response:
    name = request.match_info["name"]
    now_ms = int(time.time() * 1000)
    try:
        if name in views.AGENT_ENDPOINTS:
            query = AgentQuery.from_query(request.query, now_ms, dashboard.prices())
            data = await dashboard.agent_view(name, query)
        elif name in views.ENDPOINTS:
            data = await dashboard.view(name, Filters.from_query(request.query, now_ms))
        else:
            return web.json_response(
                {"error": f"no such view; try one of {', '.join(views.NAMES)}"},
                status=404,
                headers=NO_STORE,
            )
    except ValueError as error:  # a filter, a limit or a cursor, named in the message
        return web.json_response({"error": str(error)}, status=400, headers=NO_STORE)
    return web.json_response(data, dumps=_dumps, headers=NO_STORE)


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()
