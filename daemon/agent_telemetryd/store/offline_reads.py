"""Reading the buffer with the daemon down (the command line's views: status, export,
report, stats, preview): nothing of it is changed, not even SQLite's side files, and
nothing is read that is not the buffer's.

A read-only SQLite connection to a WAL database still makes a `-wal` and a 32 KiB `-shm`
beside it and leaves them there; on a disk full to the last byte it cannot, and fails
(SQLITE_IOERR_SHMSIZE) exactly when a user looks at what fills the disk. It also replays
whatever `-wal` lies beside the file, the buffer's or not. So, by what lies beside it:

- No WAL with a frame in it (the daemon stopped cleanly, or its last checkpoint emptied
  it): the file is opened `immutable`. SQLite then reads the main file alone, takes no
  lock and makes no `-wal` or `-shm`.
- The buffer's own WAL with frames (the daemon was killed, or its last checkpoint found no
  room): those are committed events, read as SQLite reads them, on a read-only connection.
  That needs its `-shm`, which the daemon left beside it.
- A WAL that is not the buffer's, by the rule the daemon applies when it opens the buffer
  (store/wal_identity.py): never read and left where it is, for the daemon to move aside
  with its log line when it starts. The file is opened immutable, and the reason is
  returned for the command to say so.

Immutable holds while nothing writes the file. The daemon is down; one that starts during
a read writes its WAL first and the main file only at a checkpoint, and a `clear` renames
a fresh file over the path, which leaves the inode being read as it was.
"""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from agent_telemetryd.store.database import BufferOpenError, connect
from agent_telemetryd.store.wal_identity import foreign_wal_reason, holds_frames


@dataclass(frozen=True)
class Reader:
    conn: sqlite3.Connection
    # Why the `-wal` beside the buffer was not read (it is not the buffer's), or None.
    foreign_wal: str | None = None


def open_reader(path: Path) -> Reader:
    """The buffer, read-only and as it is on disk; see the module's docstring."""
    foreign = foreign_wal_reason(path)
    if foreign is None and holds_frames(path):
        try:
            conn = connect(path, readonly=True)
        except sqlite3.Error as error:
            raise BufferOpenError(_cannot_read_wal(path, error)) from error
        try:
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()  # opens the WAL
        except sqlite3.Error as error:
            conn.close()
            raise BufferOpenError(_cannot_read_wal(path, error)) from error
        return Reader(conn)
    conn = sqlite3.connect(
        f"file:{quote(str(path))}?mode=ro&immutable=1",
        uri=True,
        isolation_level=None,
        check_same_thread=False,
    )
    conn.execute("PRAGMA temp_store = MEMORY")
    return Reader(conn, foreign)


def _cannot_read_wal(path: Path, error: sqlite3.Error) -> str:
    try:
        stats = os.statvfs(path.parent)
        full = stats.f_bavail == 0
    except OSError:
        full = False
    if full:
        return (
            f"cannot read the buffer at {path}: no space left on device (reading its "
            "write-ahead log needs a few KiB beside it); free some space on that disk"
        )
    return f"cannot read the buffer at {path}: {error}"
