"""`forget` and the backends: which anonymous ids each may hold data for, and keeping
that list until it has confirmed their erasure.

The list lives in the buffer's `uploaded_ids` table, kept through `clear`, retention and
eviction: one row per id and backend, the backend as its sender names it (`http
<endpoint>`, `posthog <host>`, `file <path>`). An id goes in before the first request
under it leaves (`record_before_send`), not when its events are marked sent: a backend
may commit a batch whose answer never arrives (a crash, a timeout, a dropped
connection), and its data is then there all the same.

`forget` asks each backend an id was ever sent to, not only the one configured now: the
config may have moved to another sender since. Where it can no longer ask (the backend
is no longer configured), it says plainly where the data is, and the ids stay listed.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from agent_telemetryd.senders.base import Sender

NOTHING_UPLOADED = "nothing was ever uploaded from here, so there is nothing to erase remotely"
UNKNOWN_BACKEND = ""  # ids recorded before backends were: the configured one is asked


@dataclass(frozen=True)
class SentTo:
    anonymous_id: str
    backend: str


def sent_to(conn: sqlite3.Connection) -> list[SentTo]:
    """Every (id, backend) not yet confirmed erased, oldest first."""
    rows = conn.execute(
        "SELECT anonymous_id, backend FROM uploaded_ids ORDER BY first_sent_ms, 1, 2"
    )
    return [SentTo(anonymous_id, backend) for anonymous_id, backend in rows]


def record_before_send(
    conn: sqlite3.Connection, anonymous_id: str, backend: str, now_ms: int
) -> None:
    """Note that a request under `anonymous_id` is about to leave for `backend`."""
    conn.execute(
        "INSERT OR IGNORE INTO uploaded_ids (anonymous_id, backend, first_sent_ms)"
        " VALUES (?, ?, ?)",
        (anonymous_id, backend, now_ms),
    )


def mark_erased(conn: sqlite3.Connection, erased: list[SentTo]) -> None:
    conn.executemany(
        "DELETE FROM uploaded_ids WHERE anonymous_id = ? AND backend = ?",
        [(item.anonymous_id, item.backend) for item in erased],
    )


async def request_erasure(
    current: Sender, sent: list[SentTo], reach: Callable[[str], Sender | None]
) -> tuple[dict[str, Any], list[SentTo]]:
    """Ask every backend in `sent` to erase its ids: the configured one through `current`,
    another through what `reach` makes of it (None: it cannot be asked from here).

    Returns the answer for the user (one entry a backend in `backends`) and the pairs the
    backends confirmed: only those may be marked erased, the rest stay listed so `forget`
    can be re-run.
    """
    if not sent:
        answer = {"requested": False, "ok": True, "message": NOTHING_UPLOADED}
        return {**answer, "confirmed": False, "backends": []}, []
    by_backend: dict[str, list[SentTo]] = {}
    for item in sent:
        backend = current.backend if item.backend == UNKNOWN_BACKEND else item.backend
        by_backend.setdefault(backend, []).append(item)
    answers = []
    erased: list[SentTo] = []
    for backend, items in by_backend.items():
        ids = list(dict.fromkeys(item.anonymous_id for item in items))
        sender = current if backend == current.backend else reach(backend)
        if sender is None:
            answers.append(_not_reachable(backend, ids))
            continue
        result = await sender.erase(ids)
        confirmed = result.requested and result.ok
        if confirmed:
            erased.extend(items)
        answers.append(
            {
                "backend": backend,
                "anonymous_ids": ids,
                "requested": result.requested,
                "ok": result.ok,
                "confirmed": confirmed,
                "message": result.message,
            }
        )
    outcome = {
        "requested": any(answer["requested"] for answer in answers),
        "ok": all(answer["ok"] for answer in answers),
        "message": "; ".join(f"{a['backend']}: {a['message']}" for a in answers),
        "confirmed": all(answer["confirmed"] for answer in answers),
        "backends": answers,
    }
    return outcome, erased


def _not_reachable(backend: str, ids: list[str]) -> dict[str, Any]:
    return {
        "backend": backend,
        "anonymous_ids": ids,
        "requested": False,
        "ok": False,
        "confirmed": False,
        "message": (
            f"it holds the data of anonymous id(s) {', '.join(ids)} and is no longer "
            "configured here, so no "
            "erasure request was sent: the team that runs it must delete that data there "
            "(or configure it again and run forget again)"
        ),
    }
