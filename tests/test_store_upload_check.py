"""Migration 10 spells the events table's check on `upload` as comparisons instead of an
IN list (which SQLite evaluates by building a temporary index for every row inserted):
a buffer of the version before keeps every row, and the check still allows exactly the
five upload states, for the migrating connection and for one opened before it."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from agent_telemetryd.store.migrations import MIGRATIONS, SCHEMA_VERSION, _statements, migrate


def _buffer_at(version: int, path: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    for script in MIGRATIONS[:version]:
        assert isinstance(script, str)
        for statement in _statements(script):
            conn.execute(statement)
    conn.execute(f"PRAGMA user_version = {version}")
    return conn


INSERT = (
    "INSERT INTO events (uuid, event, ts_ms, received_ms, properties, agent, transport,"
    " consent, upload, anonymous_id, daemon_version) VALUES (?, 'e', 1, 1, '{}', 'a', 'unix',"
    " 'local', ?, '', '0')"
)


def test_the_upload_check_is_rewritten_with_every_row_and_state_kept(tmp_path: Path) -> None:
    path = str(tmp_path / "buffer.sqlite")
    conn = _buffer_at(9, path)
    states = ("local", "pending", "sent", "rate_limited", "quarantined")
    conn.executemany(INSERT, [(f"u-{state}", state) for state in states])
    # A second connection that read the old schema, as the daemon's reader thread would.
    reader = sqlite3.connect(path, isolation_level=None)
    assert reader.execute("SELECT count(*) FROM events").fetchone() == (5,)

    assert migrate(conn) == SCHEMA_VERSION
    schema = conn.execute("SELECT sql FROM sqlite_master WHERE name = 'events'").fetchone()[0]
    assert " IN (" not in schema and "upload = 'quarantined'" in schema
    # Still exactly the five states: a sixth, or none, is refused as before.
    with pytest.raises(sqlite3.IntegrityError, match="CHECK"):
        conn.execute(INSERT, ("u-bogus", "uploaded"))
    with pytest.raises(sqlite3.IntegrityError):
        conn.execute(INSERT, ("u-null", None))
    conn.executemany(INSERT, [(f"v-{state}", state) for state in states])
    assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    # The other connection sees the new schema and every row.
    assert reader.execute(
        "SELECT upload, count(*) FROM events GROUP BY upload ORDER BY upload"
    ).fetchall() == sorted((state, 2) for state in states)
    reader.execute(INSERT, ("w-1", "pending"))
    with pytest.raises(sqlite3.IntegrityError, match="CHECK"):
        reader.execute(INSERT, ("w-2", "uploaded"))


def test_a_buffer_whose_check_was_already_rewritten_migrates_unchanged(tmp_path: Path) -> None:
    conn = _buffer_at(9, str(tmp_path / "buffer.sqlite"))
    assert migrate(conn) == SCHEMA_VERSION
    schema = conn.execute("SELECT sql FROM sqlite_master WHERE name = 'events'").fetchone()[0]
    conn.execute("PRAGMA user_version = 9")
    assert migrate(conn) == SCHEMA_VERSION
    assert conn.execute("SELECT sql FROM sqlite_master WHERE name = 'events'").fetchone() == (
        schema,
    )
