"""One group commit: a group's rows into `events` within the buffer's caps, its counters
and meta rows with them, in one transaction. Runs on the writer's thread (store/writer.py),
which decides what goes into a group and when.

The caps: `max_events` rows and `max_bytes` of the file. A group that fits goes in whole;
one that does not goes request by request, each first evicting the oldest rows already
sent, and what still does not fit is refused from the tail of a request (what arrived
first is kept) and counted as `dropped.buffer_full`.

The counts of a group that failed to commit (`unsaved`) go in with the next one that does.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterable

from agent_telemetryd.lazy_log import get_logger
from agent_telemetryd.store.buffer_file import BufferFile
from agent_telemetryd.store.insert_rows import insert_rows
from agent_telemetryd.store.log_throttle import ThrottledCount
from agent_telemetryd.store.rows import EventRow, UploadState
from agent_telemetryd.store.write_requests import WriteRequest, WriteResult

log = get_logger("agent_telemetryd.store")

_ADD_COUNTER = (
    "INSERT INTO counters (name, value) VALUES (?, ?)"
    " ON CONFLICT (name) DO UPDATE SET value = value + excluded.value"
)
_SET_META = (
    "INSERT INTO meta (key, value) VALUES (?, ?)"
    " ON CONFLICT (key) DO UPDATE SET value = excluded.value"
)
STORED = "stored"
# The most sent rows `_make_room` evicts for one request at the byte cap; its slices
# double up to it.
MAX_EVICT_PER_REQUEST = 50_000


class GroupCommit:
    def __init__(self, file: BufferFile, *, max_events: int, max_bytes: int) -> None:
        self._file = file
        # Counts of groups that failed to commit (store/writer.py adds them): written with
        # the next commit that succeeds, so `received = stored + rejected + dropped` holds
        # in the file, across restarts, and not only in this process's memory. Replaced,
        # never changed, on this thread: status reads it on the loop's meanwhile.
        self.unsaved: dict[str, int] = {}
        self._max_events = max_events
        self._max_bytes = max_bytes
        # The running count of stored rows (the `stored` counter), kept here so the caps
        # are checked without a query; re-read after anything else deleted rows.
        self.stored = counter(file.conn, STORED)
        self.evicting = False  # the group being committed evicts sent rows
        self._refusals = ThrottledCount()  # logged rarely: store/log_throttle.py

    def commit(self, group: list[WriteRequest]) -> list[WriteResult | None]:
        """One transaction for `group`; each request's result, None for one nobody waits for
        that went in with others (its rows' counts are in the totals all the same)."""
        conn = self._file.conn
        totals: dict[str, int] = {}
        results: list[WriteResult | None] = []
        self.evicting = False
        conn.execute("BEGIN IMMEDIATE")
        try:
            # The file size is read once per group commit, not per request: the byte cap
            # may be passed by at most one group, and the hot path does two fewer queries.
            over_bytes = self._used_bytes(conn) > self._max_bytes
            incoming = sum(len(request.rows) for request in group)
            if not over_bytes and self.stored + incoming <= self._max_events:
                self._insert_all(conn, group, totals, results)
            else:
                for request in group:
                    results.append(self._insert_fitting(conn, request, totals, over_bytes))
            carried = dict(self.unsaved)
            _add(totals, carried)
            conn.executemany(_ADD_COUNTER, [(k, v) for k, v in totals.items() if v])
            marks = [item for request in group for item in request.meta.items()]
            if marks:
                conn.executemany(_SET_META, marks)
            conn.execute("COMMIT")
        except BaseException:
            # The unsaved counts stay in memory, for the next commit to carry.
            rollback(conn)
            with contextlib.suppress(sqlite3.Error):
                self.stored = counter(conn, STORED)
            raise
        self.unsaved = _unsaved_after(self.unsaved, carried)
        self._file.after_write()
        refused = sum(result.refused for result in results if result is not None)
        told = self._refusals.add(refused) if refused else None
        if told:
            log.warning(
                "buffer_full_events_refused",
                refused=told,
                logged_at_most_every_seconds=self._refusals.seconds,
            )
        return results

    def _insert_all(
        self,
        conn: sqlite3.Connection,
        group: list[WriteRequest],
        totals: dict[str, int],
        results: list[WriteResult | None],
    ) -> None:
        """Every row of `group` fits: the rows of consecutive requests nobody waits for go
        in as one insert (a busy turn's reads, one from each agent: one run of statements
        instead of a run each), a request with an ack on its own, for its own counts."""
        waiting: list[EventRow] = []
        for request in group:
            _add(totals, request.counters)
            if request.ack is None:
                waiting.extend(request.rows)
                results.append(None)
                continue
            self._insert_counted(conn, waiting, totals)
            waiting = []
            results.append(self._insert_counted(conn, request.rows, totals))
        self._insert_counted(conn, waiting, totals)

    def _insert_fitting(
        self,
        conn: sqlite3.Connection,
        request: WriteRequest,
        totals: dict[str, int],
        over_bytes: bool,
    ) -> WriteResult:
        """A request's rows as far as the caps let them in, after evicting sent rows.

        Only new rows need room: a row whose uuid is stored already (a sender's retry of
        what went in before the buffer filled) is a duplicate, not a refusal, and must not
        take the place of a row that is missing."""
        rows = request.rows
        repeated = _repeated_rows(conn, rows)
        room = self._make_room(conn, len(rows) - len(repeated), totals, over_bytes)
        # When full, the tail of a request is refused: what arrived first is kept.
        kept: list[EventRow] = []
        refused: list[int] = []
        for position, row in enumerate(rows):
            if position in repeated:
                kept.append(row)
            elif room:
                kept.append(row)
                room -= 1
            else:
                refused.append(position)
        _add(totals, request.counters)
        _add(totals, {"dropped.buffer_full": len(refused)})
        result = self._insert_counted(conn, kept, totals)
        return WriteResult(result.inserted, result.duplicates, tuple(refused))

    def _insert_counted(
        self, conn: sqlite3.Connection, rows: list[EventRow], totals: dict[str, int]
    ) -> WriteResult:
        if not rows:
            return WriteResult(0, 0)
        before = conn.total_changes
        insert_rows(conn, rows)
        inserted = conn.total_changes - before
        self.stored += inserted
        _add(totals, {STORED: inserted, "dropped.duplicate": len(rows) - inserted})
        return WriteResult(inserted, len(rows) - inserted)

    def _make_room(
        self, conn: sqlite3.Connection, incoming: int, totals: dict[str, int], over_bytes: bool
    ) -> int:
        """How many of `incoming` rows fit, after evicting the oldest already-sent rows."""
        over_rows = self.stored + incoming - self._max_events
        if over_rows <= 0 and not over_bytes:
            return incoming
        # Evict at least a small slice when over the byte cap, so one insert can proceed.
        step = max(over_rows, min(1000, max(incoming, 1)) if over_bytes else 0)
        evicted = self._evict_sent(conn, step, totals)
        # Deleted rows give bytes back only as whole pages: a slice whose pages (and whose
        # index entries' pages) still hold other rows frees none, and new events were then
        # refused while thousands of sent rows were left to evict. So more goes, in growing
        # slices, until the file is under its cap or no sent row is left. A file far over
        # its cap (the cap lowered) is brought under it over several commits instead of
        # one: every deleted page goes through the WAL first, which a small disk may not
        # hold; meanwhile what does not fit is refused and counted.
        while self._used_bytes(conn) > self._max_bytes:
            step = min(max(step, 1) * 2, MAX_EVICT_PER_REQUEST - evicted)
            more = self._evict_sent(conn, step, totals)
            if not more:
                return 0
            evicted += more
        return max(0, min(incoming, self._max_events - self.stored))

    def _evict_sent(self, conn: sqlite3.Connection, limit: int, totals: dict[str, int]) -> int:
        """Delete up to `limit` of the oldest sent rows; how many went."""
        if limit <= 0:
            return 0
        evicted = int(
            conn.execute(
                "DELETE FROM events WHERE id IN"
                f" (SELECT id FROM events WHERE upload = '{UploadState.SENT}'"
                " ORDER BY id LIMIT ?)",
                (limit,),
            ).rowcount
        )
        if evicted:
            self.evicting = True
            self.stored -= evicted
            _add(totals, {STORED: -evicted, "dropped.evicted_sent": evicted})
        return evicted

    def _used_bytes(self, conn: sqlite3.Connection) -> int:
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        free = conn.execute("PRAGMA freelist_count").fetchone()[0]
        return (pages - free) * self._file.page_size


def rollback(conn: sqlite3.Connection) -> None:
    # SQLite may already have rolled back by itself (a full disk, an I/O error); a failed
    # ROLLBACK must not hide the error that caused it.
    if conn.in_transaction:
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")


def counter(conn: sqlite3.Connection, name: str) -> int:
    row = conn.execute("SELECT value FROM counters WHERE name = ?", (name,)).fetchone()
    return int(row[0]) if row else 0


# Uuids looked up a statement at a time: under the 999 parameters older SQLite allows.
_LOOKUP_CHUNK = 500


def _repeated_rows(conn: sqlite3.Connection, rows: list[EventRow]) -> set[int]:
    """Positions of the rows whose uuid is stored already or came earlier in `rows`."""
    uuids = [row.uuid for row in rows]
    known: set[str] = set()
    for start in range(0, len(uuids), _LOOKUP_CHUNK):
        chunk = uuids[start : start + _LOOKUP_CHUNK]
        marks = ", ".join("?" * len(chunk))
        found = conn.execute(f"SELECT uuid FROM events WHERE uuid IN ({marks})", chunk)
        known.update(uuid for (uuid,) in found)
    repeated: set[int] = set()
    for position, uuid in enumerate(uuids):
        if uuid in known:
            repeated.add(position)
        else:
            known.add(uuid)
    return repeated


def _unsaved_after(unsaved: dict[str, int], saved: dict[str, int]) -> dict[str, int]:
    """What is left of `unsaved` once a commit wrote `saved` (usually nothing)."""
    if unsaved == saved:
        return {}
    left = {name: value - saved.get(name, 0) for name, value in unsaved.items()}
    return {name: value for name, value in left.items() if value}


def _add(totals: dict[str, int], deltas: dict[str, int] | Iterable[tuple[str, int]]) -> None:
    items = deltas.items() if isinstance(deltas, dict) else deltas
    for name, value in items:
        if value:
            totals[name] = totals.get(name, 0) + value
