"""An ordinary database owner — no superuser, no extra grants — runs `migrate` and `serve`."""

from __future__ import annotations

import asyncio
import subprocess
import uuid
from pathlib import Path

import asyncpg
import pytest
from server_helpers import (
    READ_KEY,
    SERVER_SCRIPT,
    Running,
    client_session,
    make_batch,
    make_event,
    serve,
    server_env,
)

from agent_telemetry_server import migrate
from agent_telemetry_server.testing import TemporaryPostgres, free_port


@pytest.fixture
async def owner_database(postgres: TemporaryPostgres) -> str:
    """A fresh, empty database owned by a new role that is neither superuser nor
    a member of any predefined role; its URL connects as that role."""
    role = f"owner_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(postgres.dsn())
    try:
        await admin.execute(f"CREATE ROLE {role} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE")
        await admin.execute(f"CREATE DATABASE {role} OWNER {role}")
    finally:
        await admin.close()
    return f"postgresql://{role}@127.0.0.1:{postgres.port}/{role}"


async def test_the_owner_role_cannot_read_superuser_settings(owner_database: str) -> None:
    """The premise: what the old TimescaleDB check read is out of this role's reach."""
    conn = await asyncpg.connect(owner_database)
    try:
        assert not await conn.fetchval("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.fetchval("SELECT current_setting('shared_preload_libraries')")
        # Detection still answers, from what any role may read.
        assert await migrate.detect_storage(conn) == "plain"
    finally:
        await conn.close()


async def test_owner_role_migrates_serves_ingests_and_reads(
    owner_database: str, tmp_path: Path
) -> None:
    migrated = await asyncio.to_thread(
        subprocess.run,
        [SERVER_SCRIPT, "migrate", "--database-url", owner_database],
        capture_output=True,
        text=True,
        timeout=60,
        env=server_env(),
    )
    assert migrated.returncode == 0, migrated.stderr
    assert "applied 0002_events.plain.sql" in migrated.stdout

    port = free_port()
    session = client_session()
    try:
        with serve(owner_database, tmp_path / "server.log", port):
            server = Running(f"http://127.0.0.1:{port}", None, session)
            events = [make_event(properties={"duration_ms": 7}) for _ in range(3)]
            status, body, _ = await server.post_batch(make_batch(events), idempotency_key="o1")
            assert (status, body["accepted"]) == (200, 3)
            status, stats = await server.get("/api/v1/telemetry/stats?days=2", key=READ_KEY)
            assert (status, stats["events"], stats["unique_anonymous_ids"]) == (200, 3, 1)
            status, health = await server.get("/api/v1/telemetry/health", key=None)
            assert (status, health["storage"]) == (200, "plain")
    finally:
        await session.close()

    conn = await asyncpg.connect(owner_database)
    try:
        rows = await conn.fetch("SELECT tableowner FROM pg_tables WHERE schemaname = 'public'")
        owners = {r["tableowner"] for r in rows}
        assert owners == {await conn.fetchval("SELECT current_user")}
    finally:
        await conn.close()
