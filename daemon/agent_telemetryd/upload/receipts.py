"""A receipt of every upload request: time, backend, event count, body sha256, answer.

Every request that left gets one, stamped with the time it left: answered (the verdict
on its answer), unanswered (`no answer`: a timeout or a dropped connection, after which
the backend may still have stored it) or cancelled in flight (`cancelled`)."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from agent_telemetry._wire import format_timestamp

if TYPE_CHECKING:  # `status` reads receipts without loading the senders
    from agent_telemetryd.senders.base import SendResult
    from agent_telemetryd.upload.verdicts import Verdict

# Receipts are small, but a long-lived install makes many: keep the most recent ones.
KEEP_RECEIPTS = 10_000
NO_ANSWER = "no answer"
CANCELLED = "cancelled"


@dataclass(frozen=True, slots=True)
class Receipt:
    sent_ms: int
    backend: str
    events: int
    body_sha256: str
    # accepted, retry, split, rejected, refused, redirected; no answer, cancelled
    status: str
    http_status: int | None
    error: str | None


def answered(
    backend: str, events: int, result: SendResult, verdict: Verdict, sent_ms: int
) -> Receipt:
    """The receipt of a request that was answered, or that got no answer."""
    return Receipt(
        sent_ms=sent_ms,
        backend=backend,
        events=events,
        body_sha256=result.body_sha256,
        status=NO_ANSWER if result.status is None else verdict.value,
        http_status=result.status,
        error=result.error,
    )


def cancelled(backend: str, events: int, body_sha256: str, sent_ms: int, why: str) -> Receipt:
    """The receipt of a request cancelled after it left, before its answer came."""
    return Receipt(
        sent_ms=sent_ms,
        backend=backend,
        events=events,
        body_sha256=body_sha256,
        status=CANCELLED,
        http_status=None,
        error=f"cancelled before the answer came ({why}); the backend may have it",
    )


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
