"""The asyncpg pool, and the one place database trouble becomes `DatabaseUnavailable` (503)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg

from agent_telemetry_server.config import Settings

# Errors that mean "the database is slow, restarting or out of connections": the client
# should come back later, and its events are safe in its own buffer until then.
_TRANSIENT: tuple[type[BaseException], ...] = (
    asyncio.TimeoutError,
    OSError,
    asyncpg.exceptions.QueryCanceledError,  # statement_timeout
    asyncpg.exceptions.LockNotAvailableError,  # lock_timeout
    asyncpg.exceptions.DeadlockDetectedError,
    asyncpg.exceptions.SerializationError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.TooManyConnectionsError,
    asyncpg.exceptions.ConnectionDoesNotExistError,
    asyncpg.exceptions.PostgresConnectionError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.InterfaceError,
)

# A per-connection staging table for COPY: rows vanish at commit, so nothing is left over
# between requests that share the connection.
_STAGING = (
    "CREATE TEMP TABLE IF NOT EXISTS staging_events"
    " (LIKE events INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
)


class DatabaseUnavailable(RuntimeError):
    """Raised for transient database trouble; answered with 503 and Retry-After."""


def is_transient(exc: BaseException) -> bool:
    return isinstance(exc, _TRANSIENT)


async def _init_connection(conn: asyncpg.Connection) -> None:
    await conn.execute(_STAGING)


async def create_pool(settings: Settings) -> asyncpg.Pool:
    pool = await asyncpg.create_pool(
        settings.require_database_url(),
        min_size=settings.pool_min_size,
        max_size=settings.pool_max_size,
        init=_init_connection,
        # Client-side backstop in case the server never answers (network partition).
        command_timeout=settings.statement_timeout_ms / 1000 + 5,
        server_settings={
            "application_name": "agent-telemetry-server",
            "statement_timeout": str(settings.statement_timeout_ms),
            "lock_timeout": str(settings.lock_timeout_ms),
            # A request cancelled mid-transaction must not hold locks for long.
            "idle_in_transaction_session_timeout": str(settings.statement_timeout_ms * 3),
            "timezone": "UTC",
        },
    )
    assert pool is not None
    return pool


@asynccontextmanager
async def connection(
    pool: asyncpg.Pool, acquire_timeout: float
) -> AsyncIterator[asyncpg.Connection]:
    """A pooled connection; transient failures (and a slow acquire) → DatabaseUnavailable."""
    try:
        async with pool.acquire(timeout=acquire_timeout) as conn:
            yield conn
    except _TRANSIENT as exc:
        raise DatabaseUnavailable(type(exc).__name__) from exc
