"""The aiohttp application: resources as cleanup contexts, state behind AppKeys."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta

import asyncpg
import structlog
from aiohttp import web
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger

from agent_telemetry_server import migrate
from agent_telemetry_server.config import Settings
from agent_telemetry_server.db import connection, create_pool, is_transient
from agent_telemetry_server.metrics import Metrics
from agent_telemetry_server.middleware import access_log_middleware, error_middleware
from agent_telemetry_server.ratelimit import RateLimiter
from agent_telemetry_server.retention import run_retention
from agent_telemetry_server.routes_ingest import routes as ingest_routes
from agent_telemetry_server.routes_read import routes as read_routes
from agent_telemetry_server.state import (
    ANONYMOUS_ID_LIMITER,
    KEY_LIMITER,
    METRICS,
    POOL,
    SCHEDULER,
    SETTINGS,
)
from agent_telemetry_server.team.routes import routes as team_routes

log = structlog.get_logger("agent_telemetry_server")

# The first retention run comes soon after start, so a server restarted more often than
# the interval still trims.
_FIRST_RETENTION_DELAY = timedelta(seconds=30)


async def apply_migrations(settings: Settings) -> list[str]:
    conn = await asyncpg.connect(settings.require_database_url(), timeout=10)
    try:
        return await migrate.migrate(conn, settings.storage)
    finally:
        await conn.close()


async def database_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    await apply_migrations(settings)
    pool = await create_pool(settings)
    app[POOL] = pool
    app[METRICS].watch_pool(pool)
    yield
    try:
        # Lets an in-flight retention slice finish; a stuck connection is cut after that.
        await asyncio.wait_for(pool.close(), timeout=settings.shutdown_timeout)
    except TimeoutError:
        pool.terminate()


async def retention_job(app: web.Application) -> None:
    settings = app[SETTINGS]
    try:
        async with connection(app[POOL], settings.pool_acquire_timeout) as conn:
            result = await run_retention(
                conn, settings.retention_days, settings.idempotency_ttl_hours
            )
        app[METRICS].retention_deleted.inc(result.events_deleted)
    except Exception as exc:
        # The next run tries again; a failed run must not stop the scheduler.
        level = "warning" if is_transient(exc) or is_transient(exc.__cause__ or exc) else "error"
        getattr(log, level)("retention failed", error_type=type(exc).__name__)


async def scheduler_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    scheduler = AsyncIOScheduler(timezone=UTC)
    interval = settings.retention_interval_seconds
    scheduler.add_job(
        retention_job,
        IntervalTrigger(seconds=interval, jitter=min(300, int(interval / 10))),
        args=[app],
        id="retention",
        max_instances=1,
        coalesce=True,
        next_run_time=datetime.now(UTC) + _FIRST_RETENTION_DELAY,
    )
    scheduler.start()
    app[SCHEDULER] = scheduler
    yield
    scheduler.shutdown(wait=False)


def create_app(settings: Settings, clock: Callable[[], float] = time.monotonic) -> web.Application:
    app = web.Application(
        middlewares=[access_log_middleware, error_middleware],
        # Our own read_body enforces the real limit and answers 413 in JSON; this is a backstop.
        client_max_size=settings.max_body_bytes + 1024,
        # body.read_body decodes gzip and deflate itself (its docstring says why).
        handler_args={"auto_decompress": False},
    )
    app[SETTINGS] = settings
    app[METRICS] = Metrics()
    app[KEY_LIMITER] = RateLimiter(settings.key_rate, clock)
    app[ANONYMOUS_ID_LIMITER] = RateLimiter(settings.anonymous_id_rate, clock)
    app.cleanup_ctx.append(database_ctx)
    app.cleanup_ctx.append(scheduler_ctx)
    app.add_routes(ingest_routes)
    app.add_routes(read_routes)
    app.add_routes(team_routes)
    return app
