"""Folding the WAL back into the buffer file, on a thread of its own.

SQLite's own automatic checkpoint runs inside a commit, on the connection that commits —
the writer, so ingest waited for it — and only once the WAL holds 4,000 pages (16 MiB):
on a small file system the WAL crowded out the buffer's own pages long before (10.8 MB of
WAL beside a 4 KiB buffer was measured). So the writer's automatic checkpoint is off, and:

- after every write transaction the writer notes the WAL's size (store/wal_identity.py
  reads its header then anyway); past `limit` bytes, this thread runs a PASSIVE checkpoint
  on its own connection. PASSIVE copies frames to the buffer file without taking any lock
  the writer needs, so ingest goes on meanwhile; and it never rewinds the WAL, which only
  the writer's connection may do (see wal_identity). The writer rewinds it by itself at
  its next transaction once every frame was copied, so the file stops growing, and
  cuts the file back to half the limit at the commit after (its journal_size_limit, set
  by store/buffer_file.py): the file's size is what the WAL holds, not its largest ever.
- the limit follows the file system: a sixteenth of its size, at most SQLite's 16 MiB.
- on a small file system rewinding is not enough, since a WAL keeps its largest size:
  after a complete checkpoint the writer is asked to truncate it (`truncate_wanted`),
  which is cheap then, since nothing is left to copy.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from agent_telemetryd.lazy_log import get_logger

log = get_logger("agent_telemetryd.store")

DEFAULT_WAL_LIMIT = 4000 * 4096  # SQLite's default wal_autocheckpoint, in bytes
MIN_WAL_LIMIT = 64 * 1024


def wal_limit(directory: Path) -> int:
    """The WAL size that starts a checkpoint: a sixteenth of the file system, at most 16 MiB."""
    try:
        stats = os.statvfs(directory)
    except OSError:
        return DEFAULT_WAL_LIMIT
    total = stats.f_blocks * stats.f_frsize
    return max(MIN_WAL_LIMIT, min(DEFAULT_WAL_LIMIT, total // 16))


class Checkpointer:
    def __init__(self, path: Path, limit: int | None = None) -> None:
        self._path = path
        self.limit = limit if limit is not None else wal_limit(path.parent)
        self.small_disk = self.limit < DEFAULT_WAL_LIMIT
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="buffer-checkpoint")
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()
        self._busy = False
        self._closed = False
        self.truncate_wanted = False  # read and cleared by the writer thread
        self.checkpoints = 0
        # Checkpoints that ended, whether they copied everything or failed: the writer
        # reads the WAL's header again after each (store/buffer_file.py `_note_wal`).
        self.ended = 0

    def wal_size_seen(self, wal_bytes: int) -> None:
        """Called by the writer thread after each write transaction: cheap, never blocks."""
        if wal_bytes < self.limit:
            return
        with self._lock:
            if self._busy or self._closed:
                return
            self._busy = True
        self._executor.submit(self._checkpoint)

    @property
    def busy(self) -> bool:
        """A checkpoint is under way (or submitted)."""
        return self._busy

    def _checkpoint(self) -> None:
        try:
            if self._conn is None:
                self._conn = _connect(self._path)
            busy, frames, copied = self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            self.checkpoints += 1
            if self.small_disk and not busy and frames == copied:
                self.truncate_wanted = True
        except sqlite3.Error as error:
            # Not fatal: the writer goes on, and the next commit past the limit tries again.
            log.warning("checkpoint_failed", reason=str(error))
            self._close_connection()
        finally:
            with self._lock:
                # In this order: a writer that sees the checkpointer idle sees it counted.
                self.ended += 1
                self._busy = False

    def _close_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(sqlite3.Error):
                conn.close()

    def reset(self) -> None:
        """Let go of the file (it is being replaced): wait for a checkpoint under way and
        close the connection; the next checkpoint opens the new file."""
        self.truncate_wanted = False
        self._executor.submit(self._close_connection).result()

    def close(self) -> None:
        """Wait for a checkpoint under way and close the connection (blocks briefly)."""
        with self._lock:
            self._closed = True
        self._executor.submit(self._close_connection).result()
        self._executor.shutdown(wait=True)


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    # A checkpoint waits for nobody: when it cannot copy everything now, the next one will.
    conn.execute("PRAGMA busy_timeout = 0")
    return conn
