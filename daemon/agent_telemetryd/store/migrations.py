"""Forward-only schema migrations, versioned with `PRAGMA user_version`."""

from __future__ import annotations

import sqlite3

# Each entry moves the schema from version i to i + 1. Never edit a released entry:
# append a new one, so every existing buffer can be brought forward.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE events (
        id INTEGER PRIMARY KEY,
        uuid TEXT NOT NULL,
        event TEXT NOT NULL,
        ts_ms INTEGER NOT NULL,
        received_ms INTEGER NOT NULL,
        properties TEXT NOT NULL,
        agent TEXT NOT NULL,
        pid INTEGER,
        transport TEXT NOT NULL,
        consent TEXT NOT NULL,
        upload TEXT NOT NULL
            CHECK (upload IN ('local', 'pending', 'sent', 'rate_limited', 'quarantined')),
        anonymous_id TEXT NOT NULL,
        daemon_version TEXT NOT NULL
    );
    -- Time-ordered (v7) uuids append to this index instead of splitting random pages.
    CREATE UNIQUE INDEX events_uuid ON events (uuid);
    -- The uploader reads pending rows in order; eviction reads the oldest sent rows.
    CREATE INDEX events_upload ON events (upload, id);
    -- Retention and the dashboard's time ranges.
    CREATE INDEX events_received ON events (received_ms);
    CREATE TABLE counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
    """,
    """
    -- Why the backend refused an event, so `agent-telemetry quarantine` can say.
    ALTER TABLE events ADD COLUMN quarantine_reason TEXT;
    -- One row per upload request: when, where, how many events, the body's hash, the answer.
    CREATE TABLE upload_receipts (
        id INTEGER PRIMARY KEY,
        sent_ms INTEGER NOT NULL,
        backend TEXT NOT NULL,
        events INTEGER NOT NULL,
        body_sha256 TEXT NOT NULL,
        status TEXT NOT NULL,
        http_status INTEGER,
        error TEXT
    );
    """,
)

SCHEMA_VERSION = len(MIGRATIONS)


class MigrationError(RuntimeError):
    """The buffer was written by a newer version, or a migration failed."""


def migrate(conn: sqlite3.Connection) -> int:
    """Apply every migration the file has not seen; returns the resulting version."""
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise MigrationError(
            f"buffer schema version {version} is newer than this daemon's {SCHEMA_VERSION}; "
            "upgrade agent-telemetry"
        )
    for target in range(version + 1, SCHEMA_VERSION + 1):
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in _statements(MIGRATIONS[target - 1]):
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {target}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    return SCHEMA_VERSION


def _statements(script: str) -> list[str]:
    """Split a migration into statements (executescript would commit behind our back)."""
    statements, current = [], []
    for line in script.splitlines():
        if line.strip().startswith("--"):
            continue
        current.append(line)
        joined = "\n".join(current)
        if sqlite3.complete_statement(joined):
            statements.append(joined.strip())
            current = []
    return [s for s in statements if s]
