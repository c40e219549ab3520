"""Starting the buffer afresh: for `clear` and `forget`, and in place of a corrupt file.

Both replace the file rather than delete rows from it:
- On a full disk, deleting rows needs room first — every changed page goes to the WAL —
  and `clear` is what a user reaches for exactly then. A fresh buffer is 19 pages (76 KiB),
  made in the space a reserve file gives back (store/reserve.py); renaming it over the old
  one then frees the old file's space at once.
- Deleting two million rows one by one (the dashboard's delete trigger rules out SQLite's
  truncate shortcut) and vacuuming took longer than making 19 pages.
- A corrupt file cannot be trusted to delete anything correctly; it is kept for the user
  under another name instead, and the daemon goes on with a fresh one.

What a fresh buffer keeps of the old one (`Carry`): the anonymous id and the other `meta`
rows, the ids anything was ever sent under (`forget` must still reach them), and the
upload receipts. Everything that describes events — the rows, their counts, the
dashboard's rollups — starts empty, but for one case: in place of a corrupt file the
counters are kept when they can be read, and the events left in the file kept aside (the
`stored` count) are counted as `dropped.corrupt_moved_aside`. Every event the daemon was
handed stays accounted for; `clear` and `forget` are the user's own fresh start.
`KEPT_TABLES` and `EMPTIED_TABLES` name every table; a test fails when a migration adds
one that is in neither.

The steps, in an order where a crash at any point leaves either the old buffer or the fresh
one, and never one with the other's WAL: build the fresh file under a temporary name
(`<buffer>.fresh`, deleted if found at the next open); record that no WAL belongs to the
buffer (store/wal_identity.py); keep the old file under another name (a hard link) or not;
rename the fresh file over the buffer; move or delete the old `-wal` and `-shm`. A crash
between the last two leaves the old WAL beside the fresh file, where the record makes it
foreign: it is moved aside, never replayed into the fresh buffer.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent_telemetryd.lazy_log import get_logger
from agent_telemetryd.store.migrations import migrate
from agent_telemetryd.store.wal_identity import NO_WAL, write_sidecar

log = get_logger("agent_telemetryd.store")

KEPT_TABLES = ("meta", "uploaded_ids", "upload_receipts")
EMPTIED_TABLES = (
    "events",
    "counters",
    "dash_state",
    "dash_hourly",
    "dash_durations",
    "dash_duration_hours",
    "agent_state",
    "agent_facts",
    "agent_models",
    "agent_tools",
    "agent_durations",
    "agent_runs",
    "agent_run_models",
    "agent_metric_series",
    "agent_metric_hours",
)
FRESH_SUFFIX = ".fresh"
STORED_COUNTER = "stored"
MOVED_ASIDE = "dropped.corrupt_moved_aside"
_READ_COUNTERS = "SELECT name, value FROM counters"
_RECEIPT_COLUMNS = "sent_ms, backend, events, body_sha256, status, http_status, error"


@dataclass
class Carry:
    """What a fresh buffer takes over from the one it replaces."""

    meta: list[tuple[str, str]] = field(default_factory=list)
    uploaded_ids: list[tuple[str, str, int]] = field(default_factory=list)  # id, backend, ms
    receipts: list[tuple[Any, ...]] = field(default_factory=list)
    counters: list[tuple[str, int]] = field(default_factory=list)  # a corrupt file's only
    unreadable: list[str] = field(default_factory=list)  # tables a corrupt file did not give


def read_carry(conn: sqlite3.Connection, *, salvage: bool = False) -> Carry:
    """What to keep, read from the old buffer. With `salvage` (a corrupt file) each table
    that cannot be read is named in `unreadable` instead of failing the whole move."""
    carry = Carry()
    reads: list[tuple[str, Callable[[], None]]] = [
        ("meta", lambda: carry.meta.extend(conn.execute("SELECT key, value FROM meta"))),
        ("uploaded_ids", lambda: carry.uploaded_ids.extend(_uploaded_ids(conn))),
        (
            "upload_receipts",
            lambda: carry.receipts.extend(
                conn.execute(f"SELECT {_RECEIPT_COLUMNS} FROM upload_receipts ORDER BY id")
            ),
        ),
    ]
    if salvage:
        reads.append(("counters", lambda: carry.counters.extend(_moved_aside_counters(conn))))
    for table, read in reads:
        try:
            read()
        except sqlite3.DatabaseError:
            if not salvage:
                raise
            carry.unreadable.append(table)
    return carry


def _uploaded_ids(conn: sqlite3.Connection) -> list[tuple[str, str, int]]:
    try:
        return conn.execute(
            "SELECT anonymous_id, backend, first_sent_ms FROM uploaded_ids"
        ).fetchall()
    except sqlite3.OperationalError as error:
        # A file from before backends were recorded (a corrupt one is read unmigrated).
        if "no such column" not in str(error):
            raise
        return conn.execute("SELECT anonymous_id, '', first_sent_ms FROM uploaded_ids").fetchall()


def _moved_aside_counters(conn: sqlite3.Connection) -> list[tuple[str, int]]:
    """A corrupt file's counters as the fresh file starts them: its stored events are not
    carried over (the file is kept aside instead), so they count as dropped for that
    reason, and `received = stored + rejected + dropped` still holds. Read whole before
    any is used: a table that fails halfway gives nothing rather than a part."""
    counts = {str(name): int(value) for name, value in conn.execute(_READ_COUNTERS).fetchall()}
    stored = counts.pop(STORED_COUNTER, 0)
    if stored:
        counts[MOVED_ASIDE] = counts.get(MOVED_ASIDE, 0) + stored
    return [(name, value) for name, value in counts.items() if value]


def salvage_carry(path: Path) -> Carry:
    """What can still be read from a corrupt buffer file, on a read-only connection."""
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)
    except sqlite3.Error:
        return Carry(unreadable=[*KEPT_TABLES, "counters"])
    try:
        return read_carry(conn, salvage=True)
    finally:
        conn.close()


def fresh_path(path: Path) -> Path:
    return path.with_name(path.name + FRESH_SUFFIX)


def remove_leftover(path: Path) -> None:
    """A fresh file from a switch that was cut short (a crash) is not the buffer."""
    for leftover in (fresh_path(path), Path(f"{fresh_path(path)}-journal")):
        with contextlib.suppress(FileNotFoundError):
            leftover.unlink()


def build(path: Path, carry: Carry) -> Path:
    """Make a fresh, migrated buffer holding `carry` beside `path`; returns its path."""
    target = fresh_path(path)
    remove_leftover(path)
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.close(fd)
    try:
        conn = sqlite3.connect(target, isolation_level=None)
        try:
            # Nobody uses this file until it is renamed into place, and a crash leaves a
            # leftover the next open deletes: no journal is needed, and none takes space.
            conn.execute("PRAGMA journal_mode = OFF")
            conn.execute("PRAGMA synchronous = OFF")
            migrate(conn)
            conn.execute("BEGIN")
            conn.executemany("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", carry.meta)
            conn.executemany(
                "INSERT OR IGNORE INTO uploaded_ids (anonymous_id, backend, first_sent_ms)"
                " VALUES (?, ?, ?)",
                carry.uploaded_ids,
            )
            conn.executemany(
                f"INSERT INTO upload_receipts ({_RECEIPT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
                carry.receipts,
            )
            conn.executemany("INSERT INTO counters (name, value) VALUES (?, ?)", carry.counters)
            conn.execute("COMMIT")
        finally:
            conn.close()
        _fsync(target)
    except BaseException:
        remove_leftover(path)
        raise
    return target


def put_in_place(path: Path, fresh: Path, *, keep_old_as: str | None) -> Path | None:
    """Rename `fresh` over the buffer; the old file is kept as `<buffer>.<keep_old_as>-<time>`
    (with its -wal and -shm beside it, as SQLite pairs them) or deleted. Call with every
    connection to the old file still open or not: open ones go on with the old inode."""
    write_sidecar(path, NO_WAL)  # from here, any WAL beside the buffer is not the fresh one's
    kept = None
    if keep_old_as is not None:
        kept = _aside_name(path, keep_old_as)
        try:
            os.link(path, kept)  # the old file under its new name, while the path stays
        except FileNotFoundError:
            kept = None
        except OSError:  # a file system without hard links: a moment without a buffer
            os.replace(path, kept)
    os.replace(fresh, path)
    for suffix in ("-wal", "-shm"):
        old = Path(f"{path}{suffix}")
        with contextlib.suppress(FileNotFoundError):
            if kept is not None:
                os.replace(old, Path(f"{kept}{suffix}"))
            else:
                old.unlink()
    _fsync_dir(path.parent)
    return kept


def _aside_name(path: Path, label: str) -> Path:
    stamp = time.strftime("%Y%m%dT%H%M%S")
    target = path.with_name(f"{path.name}.{label}-{stamp}")
    count = 1
    while target.exists() or Path(f"{target}-wal").exists():
        count += 1
        target = path.with_name(f"{path.name}.{label}-{stamp}.{count}")
    return target


# What `move_aside` names its files: `<buffer>.corrupt-<time>` (a damaged buffer, with its
# WAL and SHM) and `<buffer>.foreign-<time>-wal` (a WAL that was not the buffer's).
SET_ASIDE_LABELS = ("corrupt", "foreign")


def remove_set_aside(path: Path) -> int:
    """Delete the files set aside beside the buffer at `path`; how many there were.

    They hold events too (kept for the user to look at, never deleted on their own), so
    a `clear` that promises every stored event gone deletes them with the rest."""
    removed = 0
    for label in SET_ASIDE_LABELS:
        for aside in path.parent.glob(f"{path.name}.{label}-*"):
            with contextlib.suppress(FileNotFoundError):
                aside.unlink()
                removed += 1
    return removed


def move_aside(path: Path, label: str, suffixes: tuple[str, ...] = ("", "-wal", "-shm")) -> Path:
    """Rename the file (and its WAL/SHM, as SQLite pairs them) out of the way; nothing is
    deleted. Returns the new name of the file itself."""
    target = _aside_name(path, label)
    for suffix in suffixes:
        source = Path(f"{path}{suffix}")
        if source.exists():
            source.rename(Path(f"{target}{suffix}"))
    return target


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        _fsync(path)
