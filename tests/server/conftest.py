"""Fixtures: one real PostgreSQL per session, a fresh migrated database per test, and
the server in-process (aiohttp test server on loopback) or as a real subprocess.

Clients connect from 127.0.0.2 so tests can look for that address in logs and tables.
"""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import replace
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiohttp.test_utils import TestServer
from server_helpers import Running, base_settings, client_session

from agent_telemetry_server.app import apply_migrations, create_app
from agent_telemetry_server.config import Settings
from agent_telemetry_server.testing import TemporaryPostgres, create_database

TEMPLATE = "agent_telemetry_template"
_counter = itertools.count()


@pytest.fixture(scope="session")
def postgres() -> Iterator[TemporaryPostgres]:
    with TemporaryPostgres() as pg:
        settings = Settings(database_url=pg.dsn("postgres"))
        asyncio.run(create_database(settings.require_database_url(), TEMPLATE))
        # Every test copies this already-migrated database: far quicker than migrating each.
        asyncio.run(apply_migrations(replace(settings, database_url=pg.dsn(TEMPLATE))))
        yield pg


@pytest.fixture
async def database_url(postgres: TemporaryPostgres) -> str:
    name = f"t{next(_counter)}_{uuid.uuid4().hex[:8]}"
    await create_database(postgres.dsn(), name, template=TEMPLATE)
    return postgres.dsn(name)


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(database_url)
    yield conn
    await conn.close()


@pytest.fixture
async def start_server(
    database_url: str,
) -> AsyncIterator[Callable[..., Awaitable[Running]]]:
    servers: list[TestServer] = []
    sessions: list[aiohttp.ClientSession] = []

    async def start(**changes: Any) -> Running:
        app = create_app(base_settings(database_url, **changes))
        server = TestServer(app, host="127.0.0.1")
        await server.start_server()
        servers.append(server)
        session = client_session()
        sessions.append(session)
        return Running(str(server.make_url("")).rstrip("/"), app, session)

    yield start
    for session in sessions:
        await session.close()
    for server in servers:
        await server.close()


@pytest.fixture
async def server(start_server: Callable[..., Awaitable[Running]]) -> Running:
    return await start_server()
