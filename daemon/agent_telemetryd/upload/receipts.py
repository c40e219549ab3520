"""A receipt of every upload request: time, backend, event count, body sha256, answer."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import Any

from agent_telemetry._wire import format_timestamp

# Receipts are small, but a long-lived install makes many: keep the most recent ones.
KEEP_RECEIPTS = 10_000


@dataclass(frozen=True, slots=True)
class Receipt:
    sent_ms: int
    backend: str
    events: int
    body_sha256: str
    status: str  # accepted, retry, split, rejected, refused
    http_status: int | None
    error: str | None


def record(conn: sqlite3.Connection, receipt: Receipt) -> None:
    conn.execute(
        "INSERT INTO upload_receipts"
        " (sent_ms, backend, events, body_sha256, status, http_status, error)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        (
            receipt.sent_ms,
            receipt.backend,
            receipt.events,
            receipt.body_sha256,
            receipt.status,
            receipt.http_status,
            receipt.error,
        ),
    )


def prune(conn: sqlite3.Connection, keep: int = KEEP_RECEIPTS) -> int:
    return int(
        conn.execute(
            "DELETE FROM upload_receipts WHERE id <= (SELECT max(id) FROM upload_receipts) - ?",
            (keep,),
        ).rowcount
    )


def recent(conn: sqlite3.Connection, limit: int = 50) -> list[dict[str, Any]]:
    rows = conn.execute(
        "SELECT sent_ms, backend, events, body_sha256, status, http_status, error"
        " FROM upload_receipts ORDER BY id DESC LIMIT ?",
        (limit,),
    ).fetchall()
    return [
        {
            "time": format_timestamp(row[0]),
            "backend": row[1],
            "events": row[2],
            "body_sha256": row[3],
            "status": row[4],
            "http_status": row[5],
            "error": row[6],
        }
        for row in rows
    ]


def last_accepted_ms(conn: sqlite3.Connection) -> int | None:
    """When a batch was last accepted by the backend (`last_upload` in status)."""
    row = conn.execute(
        "SELECT max(sent_ms) FROM upload_receipts WHERE status = 'accepted'"
    ).fetchone()
    return int(row[0]) if row and row[0] is not None else None
