"""Read routes: stats and analytics (read key), health and metrics (no key)."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from datetime import date
from typing import Any

import asyncpg
from aiohttp import web

from agent_telemetry_server import analytics, migrate, queries
from agent_telemetry_server.db import connection
from agent_telemetry_server.metrics import CONTENT_TYPE
from agent_telemetry_server.responses import ApiError, enforce_rate, json_response, require_key
from agent_telemetry_server.state import KEY_LIMITER, METRICS, POOL, SETTINGS
from agent_telemetry_server.validation import ERROR_RULE

routes = web.RouteTableDef()

_DEFAULT_DAYS = 30
# ASCII digits only: str.isdigit() also takes "²" and other digits int() refuses, and a
# short bound keeps int() away from its limit on very long numbers.
_WHOLE_NUMBER = re.compile(r"[0-9]{1,9}")


def _days(request: web.Request) -> int:
    highest = max(request.app[SETTINGS].retention_days, _DEFAULT_DAYS)
    text = request.query.get("days", str(_DEFAULT_DAYS))
    if not _WHOLE_NUMBER.fullmatch(text) or not 1 <= int(text) <= highest:
        raise ApiError(400, f"days must be a whole number from 1 to {highest}")
    return int(text)


Query = Callable[[asyncpg.Connection, date, date], Awaitable[Any]]


async def _read(request: web.Request, query: Query) -> tuple[date, date, Any]:
    app = request.app
    settings = app[SETTINGS]
    key_index = require_key(request, settings.read_keys)
    # Read keys share the key limiter; their indexes are kept apart from ingest keys'.
    enforce_rate(request, app[KEY_LIMITER], ("read", key_index), "key")
    start, end = queries.window(_days(request))
    async with connection(app[POOL], settings.pool_acquire_timeout) as conn:
        return start, end, await query(conn, start, end)


@routes.get("/api/v1/telemetry/stats")
async def stats(request: web.Request) -> web.Response:
    _, _, body = await _read(request, queries.stats)
    return json_response(body)


def _analytics(name: str, query: Query, **extra: Any) -> Any:
    async def handler(request: web.Request) -> web.Response:
        start, end, rows = await _read(request, query)
        return json_response(
            {"from": start.isoformat(), "to": end.isoformat(), **extra, name: rows}
        )

    return handler


def _report(query: Query, **extra: Any) -> Any:
    """A handler whose query answers an object: its keys join the window's."""

    async def handler(request: web.Request) -> web.Response:
        start, end, body = await _read(request, query)
        return json_response({"from": start.isoformat(), "to": end.isoformat(), **extra, **body})

    return handler


routes.get("/api/v1/analytics/agents")(_analytics("agents", queries.agents))
routes.get("/api/v1/analytics/errors")(_analytics("errors", queries.errors, rule=ERROR_RULE))
routes.get("/api/v1/analytics/performance")(_analytics("performance", queries.performance))
# The team dashboard's sources: rollups only (analytics.py).
routes.get("/api/v1/analytics/overview")(_report(analytics.overview, rule=ERROR_RULE))
routes.get("/api/v1/analytics/durations")(
    _analytics("durations", analytics.durations, rule=analytics.DURATION_RULE)
)
routes.get("/api/v1/analytics/models")(
    _report(analytics.models, duration_rule=analytics.DURATION_RULE)
)
routes.get("/api/v1/analytics/cost")(_report(analytics.cost))
routes.get("/api/v1/analytics/tools")(
    _analytics("tools", analytics.tools, duration_rule=analytics.DURATION_RULE)
)


@routes.get("/api/v1/telemetry/health")
async def health(request: web.Request) -> web.Response:
    app = request.app
    async with connection(app[POOL], app[SETTINGS].pool_acquire_timeout) as conn:
        current = await migrate.state(conn)
    body = {
        "status": current.summary,
        "database": "ok",
        "migrations": {"current": current.current, "latest": current.latest},
        "storage": current.storage,
    }
    return json_response(body, 200 if current.up_to_date else 503)


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    app = request.app
    if not app[SETTINGS].metrics_enabled:
        raise ApiError(404, "metrics are turned off")
    return web.Response(
        body=app[METRICS].render(),
        headers={"Content-Type": CONTENT_TYPE, "X-Content-Type-Options": "nosniff"},
    )
