"""Reads and maintenance writes over a plain sqlite3 connection.

The same functions serve the daemon (on its reader or writer thread) and the CLI when the
daemon is down, so what `status` or `export` shows never depends on which one asked.
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson

from agent_telemetry._wire import format_timestamp
from agent_telemetryd.store.rows import UploadState

EXPORT_FIELDS = (
    "uuid",
    "event",
    "timestamp",
    "received_at",
    "properties",
    "upload",
    "agent",
    "pid",
    "transport",
    "consent",
    "trace_id",
    "span_id",
    "parent_span_id",
)


def counters(conn: sqlite3.Connection) -> dict[str, int]:
    return {name: int(value) for name, value in conn.execute("SELECT name, value FROM counters")}


# The (upload, id) index holds every state but local (migration 11): the others are
# counted on it, and local is what is left of all rows. One statement, so one snapshot.
_STATE_COUNTS = (
    "SELECT NULL, count(*) FROM events UNION ALL SELECT upload, count(*) FROM events"
    # Spelled as the index's condition is, so SQLite reads the index alone.
    " WHERE upload = 'pending' OR upload = 'sent' OR upload = 'rate_limited'"
    " OR upload = 'quarantined' GROUP BY upload"
)


def upload_state_counts(conn: sqlite3.Connection) -> dict[UploadState, int]:
    counts = dict.fromkeys(UploadState, 0)
    total = 0
    for state, count in conn.execute(_STATE_COUNTS):
        if state is None:
            total = int(count)
        else:
            counts[UploadState(state)] = int(count)
    counts[UploadState.LOCAL] = total - sum(counts.values())
    return counts


def database_bytes(conn: sqlite3.Connection) -> int:
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    size = conn.execute("PRAGMA page_size").fetchone()[0]
    return int(pages * size)


# The `buffer` part of `status --json` when there is no buffer file (mode off, nothing yet).
EMPTY_BUFFER: dict[str, int] = {
    "events": 0,
    "pending_upload": 0,
    "sent": 0,
    "local_only": 0,
    "rate_limited": 0,
    "quarantined": 0,
    "bytes": 0,
}


def buffer_summary(conn: sqlite3.Connection) -> dict[str, Any]:
    """The `buffer` and `counters` parts of `status --json`."""
    states = upload_state_counts(conn)
    stored_counters = counters(conn)
    return {
        "buffer": {
            "events": sum(states.values()),
            "pending_upload": states[UploadState.PENDING],
            "sent": states[UploadState.SENT],
            "local_only": states[UploadState.LOCAL],
            "rate_limited": states[UploadState.RATE_LIMITED],
            "quarantined": states[UploadState.QUARANTINED],
            "bytes": database_bytes(conn),
        },
        "stored_counters": stored_counters,
    }


def iter_export_page(
    conn: sqlite3.Connection,
    after_id: int,
    limit: int,
    where: ExportFilter | None = None,
) -> Iterator[tuple[int, dict[str, Any]]]:
    """(id, row) for up to `limit` events with id > after_id, in arrival order."""
    clause, params = where.sql() if where is not None else ("", ())
    rows = conn.execute(
        "SELECT id, uuid, event, ts_ms, received_ms, properties, upload, agent, pid,"
        " transport, consent, trace_id, span_id, parent_span_id"
        f" FROM events WHERE id > ?{clause} ORDER BY id LIMIT ?",
        (after_id, *params, limit),
    ).fetchall()
    for row in rows:
        yield (
            row[0],
            {
                "uuid": row[1],
                "event": row[2],
                "timestamp": format_timestamp(row[3]),
                "received_at": format_timestamp(row[4]),
                "properties": orjson.loads(row[5]),
                "upload": row[6],
                "agent": row[7],
                "pid": row[8],
                "transport": row[9],
                "consent": row[10],
                "trace_id": row[11],
                "span_id": row[12],
                "parent_span_id": row[13],
            },
        )


@dataclass(frozen=True)
class ExportFilter:
    """Which events `export` keeps: receipt time in [since_ms, until_ms), and any of the
    agents and event names when given (as the dashboard filters)."""

    since_ms: int | None = None
    until_ms: int | None = None
    agents: tuple[str, ...] = ()
    events: tuple[str, ...] = ()

    def sql(self) -> tuple[str, tuple[Any, ...]]:
        """` AND …` conditions and their parameters (empty when nothing is filtered)."""
        parts: list[str] = []
        params: list[Any] = []
        if self.since_ms is not None:
            parts.append("received_ms >= ?")
            params.append(self.since_ms)
        if self.until_ms is not None:
            parts.append("received_ms < ?")
            params.append(self.until_ms)
        for column, values in (("agent", self.agents), ("event", self.events)):
            if values:
                parts.append(f"{column} IN ({', '.join('?' * len(values))})")
                params.extend(values)
        return "".join(f" AND {part}" for part in parts), tuple(params)


def iter_export(
    conn: sqlite3.Connection, chunk: int = 2000, where: ExportFilter | None = None
) -> Iterator[dict[str, Any]]:
    """Every stored event (or those `where` keeps) in arrival order, a chunk at a time
    (memory stays flat)."""
    last_id = 0
    while True:
        page = list(iter_export_page(conn, last_id, chunk, where))
        if not page:
            return
        for _, row in page:
            yield row
        last_id = page[-1][0]


def newest_received_ms(conn: sqlite3.Connection) -> int | None:
    """When the newest stored event arrived (by this machine's clock), or None."""
    row = conn.execute("SELECT max(received_ms) FROM events").fetchone()
    return int(row[0]) if row and row[0] is not None else None


def get_meta(conn: sqlite3.Connection, key: str) -> str | None:
    row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    return row[0] if row else None


def set_meta(conn: sqlite3.Connection, key: str, value: str) -> None:
    conn.execute(
        "INSERT INTO meta (key, value) VALUES (?, ?)"
        " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        (key, value),
    )


def delete_meta(conn: sqlite3.Connection, key: str) -> None:
    conn.execute("DELETE FROM meta WHERE key = ?", (key,))


def ensure_anonymous_id(conn: sqlite3.Connection) -> str:
    """The installation's id: random (v4), made once, never derived from the machine."""
    existing = get_meta(conn, "anonymous_id")
    if existing:
        return existing
    new_id = str(uuid.uuid4())
    set_meta(conn, "anonymous_id", new_id)
    return new_id


def reset_anonymous_id(conn: sqlite3.Connection) -> str:
    new_id = str(uuid.uuid4())
    set_meta(conn, "anonymous_id", new_id)
    return new_id


def purge_older_than(conn: sqlite3.Connection, cutoff_ms: int, limit: int = 50_000) -> int:
    """Delete up to `limit` events received before the cutoff; counted as retention drops."""
    deleted = conn.execute(
        "DELETE FROM events WHERE id IN"
        " (SELECT id FROM events WHERE received_ms < ? ORDER BY received_ms LIMIT ?)",
        (cutoff_ms, limit),
    ).rowcount
    if deleted:
        for name, delta in (("stored", -deleted), ("dropped.retention", deleted)):
            conn.execute(
                "INSERT INTO counters (name, value) VALUES (?, ?)"
                " ON CONFLICT (name) DO UPDATE SET value = value + excluded.value",
                (name, delta),
            )
    return int(deleted)
