"""Access log and error mapping.

The access log replaces aiohttp's (which prints the client address): it records the route
*pattern*, never the path, because a path can carry an anonymous id.
"""

from __future__ import annotations

import time
import traceback

import structlog
from aiohttp import web
from aiohttp.typedefs import Handler

from agent_telemetry_server.db import DatabaseUnavailable, is_transient
from agent_telemetry_server.responses import ApiError, json_response
from agent_telemetry_server.state import METRICS, SETTINGS

access_log = structlog.get_logger("agent_telemetry_server.access")
error_log = structlog.get_logger("agent_telemetry_server.errors")


def _route(request: web.Request) -> str:
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "(unmatched)"


@web.middleware
async def access_log_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    started = time.perf_counter()
    status = 500
    metrics = request.app[METRICS]
    metrics.in_progress.inc()
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    finally:
        elapsed = time.perf_counter() - started
        route = _route(request)
        metrics.in_progress.dec()
        metrics.requests.labels(route, str(status)).inc()
        metrics.request_seconds.labels(route).observe(elapsed)
        access_log.info(
            "request",
            method=request.method,
            route=route,
            status=status,
            duration_ms=round(elapsed * 1000, 2),
        )


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as exc:
        return exc.response()
    except web.HTTPException:
        raise
    except Exception as exc:
        if isinstance(exc, DatabaseUnavailable) or is_transient(exc):
            request.app[METRICS].db_unavailable.inc()
            cause = exc.__cause__ or exc
            error_log.warning("database unavailable", error_type=type(cause).__name__)
            retry = str(request.app[SETTINGS].retry_after_seconds)
            return json_response(
                {"error": "database unavailable, retry later"}, 503, {"Retry-After": retry}
            )
        # The exception's message may quote request data, so only its type and frames are logged.
        error_log.error(
            "unhandled error",
            error_type=type(exc).__name__,
            traceback="".join(traceback.format_tb(exc.__traceback__)),
        )
        return json_response({"error": "internal error"}, 500)
