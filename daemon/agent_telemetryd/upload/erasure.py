"""`forget` and the backend (DESIGN §10): which anonymous ids it may hold data for, and
keeping that list until it has confirmed their erasure.

The list lives in the buffer's `uploaded_ids` table, filled by a trigger whenever an
event is marked sent, so `clear`, retention and eviction do not make `forget` forget.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from agent_telemetryd.senders.base import Sender

NOTHING_UPLOADED = "nothing was ever uploaded from here, so there is nothing to erase remotely"


def uploaded_ids(conn: sqlite3.Connection) -> list[str]:
    rows = conn.execute("SELECT anonymous_id FROM uploaded_ids ORDER BY first_sent_ms, 1")
    return [row[0] for row in rows]


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
