"""When the backend may be contacted again, kept across flushes and restarts.

A Retry-After longer than a flush waits, or the backoff after the backend stayed
unavailable, ends the flush; what the backend asked for must still hold for the next
one, scheduled or asked for, and after the daemon restarts (a timer may start it for
each upload). So the time is kept in the buffer's `meta` table, with the backend it
is about (another backend, after a config change, is not held to it) and a reason in
our own words. A batch accepted by the backend clears it.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import Any

import orjson

from agent_telemetry._wire import format_timestamp
from agent_telemetryd.store import queries

META_KEY = "upload_not_before"
# 9999-12-31T23:59:59.999Z: a later time has no RFC 3339 date, so nothing could show it or
# read it back (a wait kept before Retry-After was bounded may be that far).
_LAST_DATE_MS = 253_402_300_799_999


@dataclass(frozen=True, slots=True)
class BackendWait:
    until_ms: int
    backend: str
    reason: str  # ours, never the backend's text: "it asked to wait 3600s (HTTP 429)"

    @property
    def until(self) -> str:
        return format_timestamp(self.until_ms)

    def applies(self, backend: str, now_ms: int) -> bool:
        return backend == self.backend and now_ms < self.until_ms

    def message(self, now_ms: int) -> str:
        seconds = max(0, -(-(self.until_ms - now_ms) // 1000))
        return (
            f"the backend is not contacted again before {self.until} (in {seconds}s): "
            f"{self.reason}; nothing was sent and the events stay pending"
        )

    def as_dict(self) -> dict[str, Any]:
        return {"until": self.until, "backend": self.backend, "reason": self.reason}


def read(conn: sqlite3.Connection) -> BackendWait | None:
    raw = queries.get_meta(conn, META_KEY)
    if raw is None:
        return None
    try:
        found = orjson.loads(raw)
        wait = BackendWait(int(found["until_ms"]), str(found["backend"]), str(found["reason"]))
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return None  # unreadable: as if none was recorded; the next one replaces it
    return wait if wait.until_ms <= _LAST_DATE_MS else None


def record(conn: sqlite3.Connection, wait: BackendWait) -> None:
    value = {"until_ms": wait.until_ms, "backend": wait.backend, "reason": wait.reason}
    queries.set_meta(conn, META_KEY, orjson.dumps(value).decode())


def clear(conn: sqlite3.Connection) -> None:
    queries.delete_meta(conn, META_KEY)
