"""Migration 11 leaves local rows out of the (upload, id) index: a buffer of the version
before keeps every row and upload state, status still counts every state, and what reads
rows by state (a flush's pages, eviction of the oldest sent, quarantine, the rate limit's
counts, revoking consent) does the same work however many local rows the buffer holds."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

from agent_telemetryd.store import queries, upload_queries
from agent_telemetryd.store.database import open_buffer
from agent_telemetryd.store.migrations import MIGRATIONS, SCHEMA_VERSION, _statements, migrate
from agent_telemetryd.store.rows import UploadState

STATES = ("local", "pending", "sent", "rate_limited", "quarantined")
INSERT = (
    "INSERT INTO events (uuid, event, ts_ms, received_ms, properties, agent, transport,"
    " consent, upload, anonymous_id, daemon_version) VALUES (?, 'e', ?, ?, '{}', ?, 'unix',"
    " 'local', ?, '', '0')"
)


def _buffer_at(version: int, path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    for step in MIGRATIONS[:version]:
        if callable(step):
            conn.execute("BEGIN")
            step(conn)
            conn.execute("COMMIT")
        else:
            for statement in _statements(step):
                conn.execute(statement)
    conn.execute(f"PRAGMA user_version = {version}")
    return conn


def _fill(conn: sqlite3.Connection, counts: dict[str, int], start: int = 0) -> None:
    rows = []
    for state, count in counts.items():
        for i in range(count):
            n = start + len(rows)
            rows.append((f"u-{n}", n, n, f"agent-{i % 3}", state))
    conn.execute("BEGIN")
    conn.executemany(INSERT, rows)
    conn.execute("COMMIT")


def test_a_buffer_of_the_version_before_keeps_every_row_and_state(tmp_path: Path) -> None:
    conn = _buffer_at(10, tmp_path / "buffer.sqlite3")
    counts = {"local": 7, "pending": 5, "sent": 4, "rate_limited": 3, "quarantined": 2}
    _fill(conn, counts)
    before = conn.execute("SELECT * FROM events ORDER BY id").fetchall()

    assert migrate(conn) == SCHEMA_VERSION
    assert conn.execute("SELECT * FROM events ORDER BY id").fetchall() == before
    assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    index = conn.execute("SELECT sql FROM sqlite_master WHERE name = 'events_upload'").fetchone()
    assert "WHERE upload = 'pending'" in index[0] and "'local'" not in index[0]
    assert queries.upload_state_counts(conn) == {UploadState(s): n for s, n in counts.items()}
    # Rows change state in and out of the index; the counts follow.
    assert upload_queries.revoke_pending(conn, limit=2) == 2
    assert upload_queries.mark_sent(conn, [1, 10, 11]) == 3  # a local row, two pending ones
    assert queries.upload_state_counts(conn) == {
        UploadState.LOCAL: 7 - 1 + 2,
        UploadState.PENDING: 5 - 2 - 2,
        UploadState.SENT: 4 + 3,
        UploadState.RATE_LIMITED: 3,
        UploadState.QUARANTINED: 2,
    }
    assert upload_queries.pending_count(conn) == 1
    assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]


def _steps(conn: sqlite3.Connection, read: Callable[[sqlite3.Connection], object]) -> int:
    """How many SQLite VM steps `read` takes: the work it does, whatever the machine's
    speed (a progress handler called at every step, counting)."""
    steps = 0

    def count() -> int:
        nonlocal steps
        steps += 1
        return 0

    conn.set_progress_handler(count, 1)
    try:
        conn.execute("BEGIN")
        read(conn)
        conn.execute("ROLLBACK")
    finally:
        conn.set_progress_handler(None, 0)
    return steps


def test_reads_by_state_do_not_grow_with_the_local_rows(tmp_path: Path) -> None:
    conn = open_buffer(tmp_path / "buffer.sqlite3")
    _fill(conn, {"local": 10, "pending": 40, "sent": 40, "rate_limited": 5, "quarantined": 5})
    reads: dict[str, Callable[[sqlite3.Connection], object]] = {
        "a flush's page": lambda c: upload_queries.pending_page(c, 0, 20, now_ms=10**13),
        "pending count": upload_queries.pending_count,
        "quarantined": upload_queries.quarantined,
        "rate limited by source": upload_queries.rate_limited_sources,
        "revoking consent": lambda c: upload_queries.revoke_pending(c, limit=10),
        "evicting the oldest sent": lambda c: c.execute(
            "DELETE FROM events WHERE id IN"
            " (SELECT id FROM events WHERE upload = 'sent' ORDER BY id LIMIT 10)"
        ),
    }
    small = {name: _steps(conn, read) for name, read in reads.items()}
    _fill(conn, {"local": 5000}, start=100)
    large = {name: _steps(conn, read) for name, read in reads.items()}
    assert large == small
    assert all(small.values())
