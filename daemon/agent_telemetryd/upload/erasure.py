"""`forget` and the backend: which anonymous ids it may hold data for, and
keeping that list until it has confirmed their erasure.

The list lives in the buffer's `uploaded_ids` table, kept through `clear`, retention and
eviction. An id goes in before the first request under it leaves (`record_before_send`),
not when its events are marked sent: a backend may commit a batch whose answer never
arrives (a crash, a timeout, a dropped connection), and its data is then there all the
same. (A trigger on marking sent, from before, still adds ids too; it changes nothing.)
"""

from __future__ import annotations

import sqlite3
from typing import Any

from agent_telemetryd.senders.base import Sender

NOTHING_UPLOADED = "nothing was ever uploaded from here, so there is nothing to erase remotely"


def uploaded_ids(conn: sqlite3.Connection) -> list[str]:
    rows = conn.execute("SELECT anonymous_id FROM uploaded_ids ORDER BY first_sent_ms, 1")
    return [row[0] for row in rows]


def record_before_send(conn: sqlite3.Connection, anonymous_id: str, now_ms: int) -> None:
    """Note that a request under `anonymous_id` is about to leave (once per id)."""
    conn.execute(
        "INSERT OR IGNORE INTO uploaded_ids (anonymous_id, first_sent_ms) VALUES (?, ?)",
        (anonymous_id, now_ms),
    )


def mark_erased(conn: sqlite3.Connection, ids: list[str]) -> None:
    conn.executemany("DELETE FROM uploaded_ids WHERE anonymous_id = ?", [(i,) for i in ids])


async def request_erasure(sender: Sender, ids: list[str]) -> dict[str, Any]:
    """Ask the backend; the ids stay listed unless it confirmed, so `forget` can be re-run."""
    if not ids:
        return {"requested": False, "ok": True, "message": NOTHING_UPLOADED, "confirmed": False}
    result = await sender.erase(ids)
    return {
        "requested": result.requested,
        "ok": result.ok,
        "message": result.message,
        "confirmed": result.requested and result.ok,
    }
