"""SQL over the buffer for uploading: read pending rows a page at a time, mark them, and
make them local when upload consent goes; what the rate limit holds back, and its history.

The same functions serve the daemon (reader/writer threads) and the CLI with the daemon
down. Reads page by `id` on the (upload, id) index, so a flush costs the same whatever
was sent before, and memory holds one page however large the backlog. A pending event
the rate limit held back carries `eligible_ms`; until then the pages pass over it, and
the partial index on `eligible_ms` counts what waits without reading anything else.
"""

from __future__ import annotations

import heapq
import sqlite3
from collections.abc import Iterable
from typing import Any

from agent_telemetry._wire import format_timestamp
from agent_telemetryd.outbound import Outbound
from agent_telemetryd.store.rows import UploadState

LOCAL, PENDING, SENT = UploadState.LOCAL, UploadState.PENDING, UploadState.SENT
QUARANTINED, RATE_LIMITED = UploadState.QUARANTINED, UploadState.RATE_LIMITED

MAX_REASON_CHARS = 300
# Sources named by what the rate limit holds back (those with the most events first): a
# runaway that renames itself per run would otherwise make `status` print a name per run
# (50,000 names: a 1.5 MB line). How many there are in all is said beside them.
SOURCES_SHOWN = 20


def pending_page(
    conn: sqlite3.Connection, after_id: int, limit: int, now_ms: int
) -> list[Outbound]:
    """Up to `limit` pending events with id > after_id that are eligible by `now_ms`, in
    arrival order: what waits for the rate limit is left for a later flush."""
    columns = "id, uuid, event, ts_ms, received_ms, properties, agent, anonymous_id"
    try:
        rows = conn.execute(
            f"SELECT {columns} FROM events WHERE upload = '{PENDING}' AND id > ?"
            " AND (eligible_ms IS NULL OR eligible_ms <= ?) ORDER BY id LIMIT ?",
            (after_id, now_ms, limit),
        ).fetchall()
    except sqlite3.OperationalError:
        if _has_eligibility(conn):
            raise
        # A buffer from before the column (read with the daemon down, not yet migrated):
        # nothing in it waits.
        rows = conn.execute(
            f"SELECT {columns} FROM events WHERE upload = '{PENDING}' AND id > ?"
            " ORDER BY id LIMIT ?",
            (after_id, limit),
        ).fetchall()
    return [Outbound(*row) for row in rows]


def _has_eligibility(conn: sqlite3.Connection) -> bool:
    names = {row[1] for row in conn.execute("PRAGMA table_info(events)")}
    return "eligible_ms" in names


def pending_count(conn: sqlite3.Connection) -> int:
    """Every pending event, eligible now or waiting for the rate limit."""
    sql = f"SELECT count(*) FROM events WHERE upload = '{PENDING}'"
    return int(conn.execute(sql).fetchone()[0])


def waiting(conn: sqlite3.Connection, now_ms: int) -> dict[str, Any]:
    """The pending events the rate limit holds back at `now_ms`: how many, by source,
    and when the first and the last become eligible (ms, or None)."""
    if not _has_eligibility(conn):
        rows = []  # a buffer from before the column: nothing in it waits
    else:
        rows = conn.execute(
            "SELECT agent, count(*), min(eligible_ms), max(eligible_ms) FROM events"
            # `+upload`: not by the (upload, id) index, which would read every pending row.
            f" WHERE eligible_ms > ? AND +upload = '{PENDING}' GROUP BY agent ORDER BY agent",
            (now_ms,),
        ).fetchall()
    return {
        "events": sum(int(count) for _, count, _, _ in rows),
        "by_source": _most(((agent, int(count)) for agent, count, _, _ in rows), SOURCES_SHOWN),
        "sources": len(rows),
        "next_ms": min((first for _, _, first, _ in rows), default=None),
        "last_ms": max((last for _, _, _, last in rows), default=None),
    }


def _most(counts: Iterable[tuple[str, int]], shown: int) -> dict[str, int]:
    """The `shown` sources with the most events, most first (ties by name)."""
    return dict(heapq.nsmallest(shown, counts, key=lambda pair: (-pair[1], pair[0])))


def eligibility_history(
    conn: sqlite3.Connection, since_ms: int, now_ms: int, *, settled_only: bool = False
) -> list[tuple[str, int, str]]:
    """(source, eligible time, uuid) of every event made eligible after `since_ms` or
    waiting, by source and time: the rate limit's state, read back at start so a restart
    does not reset it. Sent events count (they used the window); events made local do not.
    The uuid tells a client's retry of one of them from a new event. `settled_only`: only
    what was eligible by `now_ms`, not what still waits.

    An event eligible on arrival counts from its receipt, but never later than `now_ms`:
    one received after `now_ms` was stamped by a clock since set back, and would hold its
    source's window shut until the clock caught up."""
    # `+upload`: by the time indexes (a window's worth), never every pending or sent row.
    states = f"+upload IN ('{PENDING}', '{SENT}')"
    until = now_ms if settled_only else 2**62
    rows = conn.execute(
        "SELECT agent, eligible_ms, uuid FROM events"
        f" WHERE eligible_ms > ? AND eligible_ms <= ? AND {states}"
        " UNION ALL SELECT agent, min(received_ms, ?), uuid FROM events"
        f" WHERE received_ms > ? AND eligible_ms IS NULL AND {states}"
        " ORDER BY 1, 2",
        (since_ms, until, now_ms, since_ms),
    ).fetchall()
    return [(agent, int(at), uuid) for agent, at, uuid in rows]


def waiting_rows(conn: sqlite3.Connection, now_ms: int) -> list[tuple[int, str, str]]:
    """(id, source, uuid) of every pending event the rate limit holds back at `now_ms`, in
    arrival order: what new rules place again."""
    rows = conn.execute(
        "SELECT id, agent, uuid FROM events"
        f" WHERE eligible_ms > ? AND +upload = '{PENDING}' ORDER BY id",
        (now_ms,),
    ).fetchall()
    return [(int(row_id), agent, uuid) for row_id, agent, uuid in rows]


def shift_waiting(conn: sqlite3.Connection, back_ms: int, now_ms: int) -> int:
    """The wall clock was set back by `back_ms`: every pending event not yet due by `now_ms`
    becomes due as much earlier, so it waits as long as it was going to, not that much
    more. Returns how many moved."""
    return int(
        conn.execute(
            "UPDATE events SET eligible_ms = eligible_ms - ?"
            f" WHERE eligible_ms > ? AND +upload = '{PENDING}'",
            (back_ms, now_ms),
        ).rowcount
    )


def reschedule(conn: sqlite3.Connection, times: list[tuple[int, int | None]]) -> int:
    """Give each (id, eligible time) its new time; a None time makes the event
    `rate_limited` for good (beyond its source's backlog). Pending rows only: one sent or
    made local meanwhile keeps its state. Returns how many rows changed."""
    changed = 0
    placed = [(at, row_id) for row_id, at in times if at is not None]
    refused = [(row_id,) for row_id, at in times if at is None]
    if placed:
        changed += conn.executemany(
            f"UPDATE events SET eligible_ms = ? WHERE id = ? AND upload = '{PENDING}'", placed
        ).rowcount
    if refused:
        changed += conn.executemany(
            f"UPDATE events SET upload = '{RATE_LIMITED}', eligible_ms = NULL"
            f" WHERE id = ? AND upload = '{PENDING}'",
            refused,
        ).rowcount
    return changed


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


def rate_limited_sources(conn: sqlite3.Connection) -> tuple[dict[str, int], int]:
    """The SOURCES_SHOWN sources with the most events kept local past the backlog cap
    (most first), and how many sources have any.

    Both walk the partial index of those rows in source order (migration 16), so SQLite
    counts each source as it passes, in a few KiB: grouping them by sorting took ~30 MiB
    of memory a million rows (everything a runaway agent sent past its cap, up to the
    buffer's 5 million) at every `status` and dashboard load."""
    by_source = f"FROM events {_BY_AGENT} WHERE upload = '{RATE_LIMITED}' GROUP BY agent"
    try:
        top = conn.execute(
            f"SELECT agent, count(*) {by_source} ORDER BY count(*) DESC, agent LIMIT ?",
            (SOURCES_SHOWN,),
        ).fetchall()
        (sources,) = conn.execute(f"SELECT count(*) FROM (SELECT 1 {by_source})").fetchone()
    except sqlite3.OperationalError:
        if _has_rate_limited_index(conn):
            raise
        # A buffer from before the index (read with the daemon down, not yet migrated).
        counts = conn.execute(
            f"SELECT agent, count(*) FROM events WHERE upload = '{RATE_LIMITED}' GROUP BY agent"
        ).fetchall()
        return _most(((agent, int(n)) for agent, n in counts), SOURCES_SHOWN), len(counts)
    return {agent: int(count) for agent, count in top}, int(sources)


_RATE_LIMITED_INDEX = "events_rate_limited"
# Named: without statistics SQLite prefers the (upload, id) index, which sorts.
_BY_AGENT = f"INDEXED BY {_RATE_LIMITED_INDEX}"


def _has_rate_limited_index(conn: sqlite3.Connection) -> bool:
    found = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'index' AND name = ?", (_RATE_LIMITED_INDEX,)
    ).fetchone()
    return found is not None


def revoke_pending(conn: sqlite3.Connection, limit: int | None = None) -> int:
    """pending → local, for good: upload consent went, and consent is not retroactive.
    With `limit`, at most that many rows (the oldest): a step on a full disk."""
    if limit is None:
        sql = f"UPDATE events SET upload = '{LOCAL}' WHERE upload = '{PENDING}'"
        return int(conn.execute(sql).rowcount)
    sql = (
        f"UPDATE events SET upload = '{LOCAL}' WHERE id IN"
        f" (SELECT id FROM events WHERE upload = '{PENDING}' ORDER BY id LIMIT ?)"
    )
    return int(conn.execute(sql, (limit,)).rowcount)
