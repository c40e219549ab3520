"""SQL over the buffer for uploading: read pending rows a page at a time, mark them, and
make them local when upload consent goes.

The same functions serve the daemon (reader/writer threads) and the CLI with the daemon
down. Reads page by `id` on the (upload, id) index, so a flush costs the same whatever
was sent before, and memory holds one page however large the backlog.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from typing import Any

from agent_telemetry._wire import format_timestamp
from agent_telemetryd.outbound import Outbound
from agent_telemetryd.store.rows import UploadState

LOCAL, PENDING, SENT = UploadState.LOCAL, UploadState.PENDING, UploadState.SENT
QUARANTINED, RATE_LIMITED = UploadState.QUARANTINED, UploadState.RATE_LIMITED

MAX_REASON_CHARS = 300


def pending_page(conn: sqlite3.Connection, after_id: int, limit: int) -> list[Outbound]:
    """Up to `limit` pending events with id > after_id, in arrival order."""
    rows = conn.execute(
        "SELECT id, uuid, event, ts_ms, received_ms, properties, agent, anonymous_id"
        f" FROM events WHERE upload = '{PENDING}' AND id > ? ORDER BY id LIMIT ?",
        (after_id, limit),
    ).fetchall()
    return [Outbound(*row) for row in rows]


def pending_count(conn: sqlite3.Connection) -> int:
    sql = f"SELECT count(*) FROM events WHERE upload = '{PENDING}'"
    return int(conn.execute(sql).fetchone()[0])


def _chunks(ids: list[int], size: int = 500) -> Iterable[list[int]]:
    # SQLite caps bound parameters per statement; stay far below it.
    for start in range(0, len(ids), size):
        yield ids[start : start + size]


def mark_sent(conn: sqlite3.Connection, ids: list[int]) -> int:
    """pending → sent. A row made local by `disable` while its request was already
    answered with 2xx was sent all the same, so it is marked sent too: status tells the
    truth about what left the machine."""
    changed = 0
    for chunk in _chunks(ids):
        marks = ",".join("?" * len(chunk))
        changed += conn.execute(
            f"UPDATE events SET upload = '{SENT}' WHERE id IN ({marks})"
            f" AND upload IN ('{PENDING}', '{LOCAL}')",
            chunk,
        ).rowcount
    return changed


def quarantine(conn: sqlite3.Connection, ids: list[int], reason: str) -> int:
    changed = 0
    for chunk in _chunks(ids):
        marks = ",".join("?" * len(chunk))
        changed += conn.execute(
            f"UPDATE events SET upload = '{QUARANTINED}', quarantine_reason = ?"
            f" WHERE id IN ({marks}) AND upload = '{PENDING}'",
            [reason[:MAX_REASON_CHARS], *chunk],
        ).rowcount
    return changed


def quarantined(conn: sqlite3.Connection, limit: int = 1000) -> dict[str, Any]:
    """The quarantined events (newest last) with the backend's reason, and their count."""
    count = f"SELECT count(*) FROM events WHERE upload = '{QUARANTINED}'"
    total = conn.execute(count).fetchone()[0]
    rows = conn.execute(
        "SELECT uuid, event, ts_ms, agent, quarantine_reason FROM events"
        f" WHERE upload = '{QUARANTINED}' ORDER BY id LIMIT ?",
        (limit,),
    ).fetchall()
    return {
        "total": int(total),
        "events": [
            {
                "uuid": uuid,
                "event": event,
                "timestamp": format_timestamp(ts_ms),
                "agent": agent,
                "reason": reason or "",
            }
            for uuid, event, ts_ms, agent, reason in rows
        ],
    }


def rate_limited_by_source(conn: sqlite3.Connection) -> dict[str, int]:
    rows = conn.execute(
        f"SELECT agent, count(*) FROM events WHERE upload = '{RATE_LIMITED}'"
        " GROUP BY agent ORDER BY agent"
    ).fetchall()
    return {agent: int(count) for agent, count in rows}


def revoke_pending(conn: sqlite3.Connection) -> int:
    """pending → local, for good: upload consent went, and consent is not retroactive."""
    sql = f"UPDATE events SET upload = '{LOCAL}' WHERE upload = '{PENDING}'"
    return int(conn.execute(sql).rowcount)
