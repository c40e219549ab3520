"""Opening the buffer file: pragmas, migrations, and recovery from a corrupt file."""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

import structlog

from agent_telemetryd.store.migrations import migrate

log = structlog.get_logger("agent_telemetryd.store")


def connect(path: Path, *, readonly: bool = False) -> sqlite3.Connection:
    """A connection with the pragmas every user of the buffer needs."""
    if readonly:
        conn = sqlite3.connect(
            f"file:{path}?mode=ro", uri=True, isolation_level=None, check_same_thread=False
        )
    else:
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    # Readers and the writer meet here; wait rather than fail when the other holds a lock.
    conn.execute("PRAGMA busy_timeout = 5000")
    if not readonly:
        # WAL: readers (CLI, dashboard, uploader) never block the writer, nor it them.
        conn.execute("PRAGMA journal_mode = WAL")
        # NORMAL in WAL mode loses at most the last commits on power loss, never integrity;
        # FULL would fsync every group commit and cap ingest at the disk's flush rate.
        conn.execute("PRAGMA synchronous = NORMAL")
        # Let the WAL grow a little more between checkpoints; fewer checkpoint stalls.
        conn.execute("PRAGMA wal_autocheckpoint = 4000")
    conn.execute("PRAGMA temp_store = MEMORY")
    return conn


# SQLite's primary result codes for a file that is not a usable database. Anything else
# (busy, locked, full, read-only, cannot open) says nothing about the file's contents.
_SQLITE_CORRUPT = 11
_SQLITE_NOTADB = 26


def is_corrupt(error: sqlite3.Error) -> bool:
    code = getattr(error, "sqlite_errorcode", None)
    return code is not None and code & 0xFF in (_SQLITE_CORRUPT, _SQLITE_NOTADB)


def open_buffer(path: Path) -> sqlite3.Connection:
    """Open (creating if needed) and migrate the buffer; a corrupt file is moved aside.

    Only a corrupt file: a locked, full or read-only one is the user's data intact, and
    moving it aside would also start a new anonymous id.
    """
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        return _open_and_migrate(path)
    except sqlite3.DatabaseError as error:
        if not is_corrupt(error):
            raise
        aside = move_aside(path)
        log.error(
            "buffer_unreadable_moved_aside",
            reason=str(error),
            moved_to=str(aside),
            action="started a fresh buffer",
        )
        return _open_and_migrate(path)


def _open_and_migrate(path: Path) -> sqlite3.Connection:
    conn = connect(path)
    try:
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        migrate(conn)
        # Created by the daemon for the user alone.
        path.chmod(0o600)
        return conn
    except BaseException:
        conn.close()
        raise


def move_aside(path: Path) -> Path:
    """Rename the file and its WAL/SHM so a fresh buffer can start; nothing is deleted."""
    stamp = time.strftime("%Y%m%dT%H%M%S")
    target = path.with_name(f"{path.name}.corrupt-{stamp}")
    for suffix in ("", "-wal", "-shm"):
        source = Path(f"{path}{suffix}")
        if source.exists():
            source.rename(Path(f"{target}{suffix}"))
    return target


@dataclass(frozen=True)
class Integrity:
    """What `PRAGMA quick_check` found: ok, corrupt, unfinished (out of time) or unreadable."""

    state: str
    messages: tuple[str, ...] = ()


def quick_check(path: Path, budget_seconds: float = 10.0, max_errors: int = 5) -> Integrity:
    """Check every page of the buffer without changing it, on a read-only connection that
    gives up after `budget_seconds` (a large buffer on a slow disk must not hang `doctor`).

    quick_check is the full structural check less the index-content comparison: what
    matters here is whether SQLite can read every page, which is what corruption breaks.
    """
    try:
        conn = connect(path, readonly=True)
    except sqlite3.Error as error:
        return Integrity("unreadable", (str(error),))
    deadline = time.monotonic() + budget_seconds
    # Called every few thousand VM steps; a non-zero answer interrupts the statement.
    conn.set_progress_handler(lambda: int(time.monotonic() > deadline), 10_000)
    try:
        rows = conn.execute(f"PRAGMA quick_check({int(max_errors)})").fetchall()
    except sqlite3.OperationalError as error:
        if "interrupted" in str(error):
            return Integrity("unfinished")
        return Integrity("corrupt" if is_corrupt(error) else "unreadable", (str(error),))
    except sqlite3.DatabaseError as error:
        return Integrity("corrupt", (str(error),))
    finally:
        conn.close()
    messages = tuple(str(row[0]) for row in rows)
    return Integrity("ok") if messages == ("ok",) else Integrity("corrupt", messages)
