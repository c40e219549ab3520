"""Opening the buffer file: pragmas, migrations, and recovery from a corrupt file."""

from __future__ import annotations

import contextlib
import errno
import os
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from agent_telemetry._paths import make_private_dirs
from agent_telemetryd.lazy_log import get_logger
from agent_telemetryd.store.fresh import move_aside, remove_leftover
from agent_telemetryd.store.migrations import (
    SCHEMA_VERSION,
    MigrationError,
    NewerSchemaError,
    migrate,
)
from agent_telemetryd.store.wal_identity import WalRecorder, foreign_wal_reason

log = get_logger("agent_telemetryd.store")


def connect(
    path: Path, *, readonly: bool = False, autocheckpoint: bool = True, exclusive: bool = False
) -> sqlite3.Connection:
    """A connection with the pragmas every user of the buffer needs.

    `exclusive`: for a writer that has the file to itself (the CLI with the daemon down,
    holding its lock). Set before the first read, exclusive locking keeps SQLite's WAL
    index in this process's memory instead of a `-shm` file, which a disk full to the last
    byte has no room for (a WAL database does not open at all then: SQLITE_IOERR_SHMSIZE).
    """
    if readonly:
        conn = sqlite3.connect(
            f"file:{path}?mode=ro", uri=True, isolation_level=None, check_same_thread=False
        )
    else:
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    if exclusive:
        conn.execute("PRAGMA locking_mode = EXCLUSIVE")
    # Readers and the writer meet here; wait rather than fail when the other holds a lock.
    conn.execute("PRAGMA busy_timeout = 5000")
    if not readonly:
        # WAL: readers (CLI, dashboard, uploader) never block the writer, nor it them.
        conn.execute("PRAGMA journal_mode = WAL")
        # NORMAL in WAL mode loses at most the last commits on power loss, never integrity;
        # FULL would fsync every group commit and cap ingest at the disk's flush rate.
        conn.execute("PRAGMA synchronous = NORMAL")
        # The daemon checkpoints on a thread of its own (store/checkpoint.py), so its
        # writer does not stop for it; a one-off writer (the CLI with the daemon down) lets
        # SQLite do it, a little less often than by default: fewer checkpoint stalls.
        conn.execute(f"PRAGMA wal_autocheckpoint = {4000 if autocheckpoint else 0}")
    conn.execute("PRAGMA temp_store = MEMORY")
    return conn


# SQLite's primary result codes for a file that is not a usable database. Anything else
# (busy, locked, full, read-only, cannot open) says nothing about the file's contents.
_SQLITE_IOERR = 10
_SQLITE_CORRUPT = 11
_SQLITE_FULL = 13
_SQLITE_NOTADB = 26


def is_corrupt(error: sqlite3.Error) -> bool:
    code = getattr(error, "sqlite_errorcode", None)
    return code is not None and code & 0xFF in (_SQLITE_CORRUPT, _SQLITE_NOTADB)


def is_full(error: BaseException) -> bool:
    """The disk (or a quota) is full: SQLITE_FULL, or ENOSPC/EDQUOT from the file system."""
    if isinstance(error, sqlite3.Error):
        code = getattr(error, "sqlite_errorcode", None)
        return code is not None and code & 0xFF == _SQLITE_FULL
    return isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT)


class BufferOpenError(sqlite3.OperationalError):
    """The buffer cannot be opened; the message names the file and says why, in words a
    user can act on ("cannot open the buffer at PATH: read-only file system")."""


def open_buffer(
    path: Path, *, autocheckpoint: bool = True, exclusive: bool = False
) -> sqlite3.Connection:
    """Open (creating if needed) and migrate the buffer; a corrupt file is moved aside.

    Only a corrupt file: a locked, full or read-only one is the user's data intact, and
    moving it aside would also start a new anonymous id. Before SQLite opens the file, a
    WAL that is not the buffer's is moved aside (store/wal_identity.py), so it is never
    replayed into it.
    """
    try:
        make_private_dirs(path.parent)
        remove_leftover(path)
        guard_wal(path)
        try:
            return _open_and_migrate(path, autocheckpoint, exclusive)
        except sqlite3.DatabaseError as error:
            if not is_corrupt(error):
                raise
            aside = move_aside(path, "corrupt")
            log.error(
                "buffer_corrupt_moved_aside",
                reason=str(error),
                moved_to=str(aside),
                action="started a fresh buffer",
            )
            return _open_and_migrate(path, autocheckpoint, exclusive)
    except MigrationError:
        raise
    except (OSError, sqlite3.Error) as error:
        if isinstance(error, BufferOpenError):
            raise
        raise open_error(path, error) from error


def open_error(path: Path, error: OSError | sqlite3.Error) -> BufferOpenError:
    """The one line for a buffer that cannot be opened (or its lock not taken), saying why."""
    return BufferOpenError(f"cannot open the buffer at {path}: {_why(path, error)}")


def guard_wal(path: Path) -> Path | None:
    """Move a WAL (and its -shm) that is not the buffer's aside, with a log line; returns
    where it went, or None when there was nothing to move."""
    reason = foreign_wal_reason(path)
    if reason is None:
        return None
    aside = move_aside(path, "foreign", suffixes=("-wal", "-shm"))
    log.error(
        "buffer_wal_not_ours_moved_aside",
        reason=reason,
        moved_to=f"{aside}-wal",
        action="the buffer opens without it; nothing of it was applied",
    )
    return aside


def _open_and_migrate(path: Path, autocheckpoint: bool, exclusive: bool) -> sqlite3.Connection:
    conn = connect(path, autocheckpoint=autocheckpoint, exclusive=exclusive)
    try:
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version <= SCHEMA_VERSION:
            # Before anything else is written: a no-op write transaction gives the WAL its
            # header now, and its salts are recorded before any event is committed under
            # them (store/wal_identity.py).
            try:
                conn.execute("BEGIN IMMEDIATE")
                conn.execute(f"PRAGMA user_version = {int(version)}")
                conn.execute("COMMIT")
                WalRecorder(path).note()
            except (OSError, sqlite3.OperationalError) as error:
                if isinstance(error, sqlite3.OperationalError) and not is_full(error):
                    raise
                # A full disk, or a record that cannot be written for any other reason,
                # must not keep the buffer from opening (freeing space is what the user
                # needs then): the recorder removed a record that cannot name this WAL,
                # and the writer tries again after its first write.
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                why = error.strerror if isinstance(error, OSError) else "disk full"
                log.warning("wal_salts_not_recorded", path=str(path), reason=why)
        try:
            migrate(conn)
        except NewerSchemaError as error:
            raise NewerSchemaError(error.version, path) from None
        # Created by the daemon for the user alone.
        path.chmod(0o600)
        return conn
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        conn.close()
        raise


def _why(path: Path, error: BaseException) -> str:
    """What stopped the buffer from opening, in the file system's words where it has them."""
    if isinstance(error, OSError) and error.strerror:
        return error.strerror.lower()
    # SQLite says what failed ("unable to open database file"), not why: ask the disk.
    folder = path.parent
    with contextlib.suppress(OSError):
        if os.statvfs(folder).f_flag & os.ST_RDONLY:
            return "read-only file system"
    if not os.access(folder, os.W_OK | os.X_OK) or (
        path.exists() and not os.access(path, os.R_OK | os.W_OK)
    ):
        return "permission denied"
    if is_full(error) or (_is_io_error(error) and _no_room(folder)):
        return "no space left on device"
    return str(error)


def _is_io_error(error: BaseException) -> bool:
    """SQLITE_IOERR: what SQLite says when it cannot make or grow its `-shm` on a full disk
    ("disk I/O error"), which names no cause; the disk's free space is asked then."""
    code = getattr(error, "sqlite_errorcode", None)
    return isinstance(error, sqlite3.Error) and code is not None and code & 0xFF == _SQLITE_IOERR


def _no_room(folder: Path) -> bool:
    try:
        return os.statvfs(folder).f_bavail == 0
    except OSError:
        return False


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
    try:
        return check_pages(conn, budget_seconds, max_errors)
    finally:
        conn.close()


def check_pages(
    conn: sqlite3.Connection, budget_seconds: float = 10.0, max_errors: int = 5
) -> Integrity:
    """`quick_check` on a connection the caller opened (and closes)."""
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
        conn.set_progress_handler(None, 0)
    messages = tuple(str(row[0]) for row in rows)
    return Integrity("ok") if messages == ("ok",) else Integrity("corrupt", messages)
