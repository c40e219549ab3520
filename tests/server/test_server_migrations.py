"""Versioned migrations on a real PostgreSQL: idempotent, checksummed, storage fixed once."""

from __future__ import annotations

import asyncpg
import pytest

from agent_telemetry_server import migrate


async def test_migrations_are_current_and_rerunning_applies_nothing(db: asyncpg.Connection) -> None:
    assert await migrate.migrate(db) == []
    state = await migrate.state(db)
    assert state.up_to_date
    assert state.current == migrate.latest_version() >= 4
    assert state.storage == "plain"
    # Plain storage: a BRIN index bounds time-range scans.
    index = await db.fetchval("SELECT indexdef FROM pg_indexes WHERE indexname = 'events_ts_brin'")
    assert "USING brin (ts)" in index


async def test_timescaledb_is_detected_only_when_it_can_be_created(db: asyncpg.Connection) -> None:
    available = await db.fetchval(
        "SELECT count(*) FROM pg_available_extensions WHERE name = 'timescaledb'"
    )
    detected = await migrate.detect_storage(db)
    if not available:
        assert detected == "plain"
    # The mode chosen at the first migration cannot be switched later.
    with pytest.raises(migrate.MigrationError, match="cannot change"):
        await migrate.migrate(db, "timescaledb")


async def test_an_edited_applied_migration_is_refused(db: asyncpg.Connection) -> None:
    await db.execute("UPDATE schema_migrations SET checksum = 'x' WHERE version = 3")
    with pytest.raises(migrate.MigrationError, match=r"0003_rollups\.sql was changed"):
        await migrate.migrate(db)


async def test_a_newer_database_is_refused(db: asyncpg.Connection) -> None:
    await db.execute("INSERT INTO schema_migrations VALUES (999, '0999_future.sql', 'x')")
    with pytest.raises(migrate.MigrationError, match="upgrade the server"):
        await migrate.migrate(db)
    assert not (await migrate.state(db)).up_to_date


def test_timescaledb_is_chosen_only_when_installed_or_available_and_preloaded() -> None:
    choose = migrate.choose_storage
    assert choose(installed=True, available=True, loader_running=False) == "timescaledb"
    assert choose(installed=False, available=True, loader_running=True) == "timescaledb"
    # Available but not preloaded: CREATE EXTENSION would fail, so plain.
    assert choose(installed=False, available=True, loader_running=False) == "plain"
    assert choose(installed=False, available=False, loader_running=True) == "plain"
