"""Writing the buffer with the daemon down: the CLI, holding the buffer's lock, is then its
one writer, and writes as the daemon's writer does (store/buffer_file.py), so what works
on a disk full to the last byte there works here too.

- `open_alone`: the buffer in exclusive locking mode — no `-shm`, which a full disk has no
  room for (store/database.py `connect`) — with the daemon's reserve file beside it. A
  WAL a stopped daemon left (killed, or its last checkpoint found no room) is folded into
  the file first and cut to nothing, while there is room for that: a write that fails
  for want of room grows the WAL into whatever room is left, and copying the old frames
  in may need some of it.
- `clear`: `BufferFile.replace`, the daemon's own step: a fresh file in place of the old
  one (store/fresh.py), made in the reserve's room when the disk is full.
- `revoke_pending`: leaving upload makes every pending event local-only. An UPDATE needs
  room in the WAL for each page it changes, which a full disk does not have: then the
  reserve and the WAL's own space are given back and the rows change in steps, each
  folded back into the file (the WAL cut to nothing) before the next, as retention
  deletes in steps (store/buffer.py). Withdrawn consent must take effect, so it may use
  the reserve.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from agent_telemetryd.store import upload_queries
from agent_telemetryd.store.buffer_file import CLEAR, BufferFile
from agent_telemetryd.store.database import is_full, open_buffer
from agent_telemetryd.store.reserve import SpaceReserve

T = TypeVar("T")
# Rows a step of `revoke_pending` changes on a full disk; steps shrink down to the last.
REVOKE_STEPS = (2_000, 100, 10)


def open_alone(path: Path) -> BufferFile:
    """The buffer for a writer that holds the buffer's lock (the caller takes it)."""
    conn = open_buffer(path, exclusive=True)
    file = BufferFile(path, conn, reserve=SpaceReserve(path.parent), exclusive=True)
    file.truncate_wal()
    return file


def clear(file: BufferFile) -> int:
    """Every event gone, from the disk too; returns how many there were."""
    return file.replace(CLEAR).events


def write(file: BufferFile, fn: Callable[[sqlite3.Connection], T]) -> T:
    """`fn` in one write transaction; the WAL's salts recorded after it, as the daemon does."""
    conn = file.conn
    conn.execute("BEGIN IMMEDIATE")
    try:
        result = fn(conn)
        conn.execute("COMMIT")
    except BaseException:
        # SQLite may have rolled back by itself (a full disk); the first error is the one.
        if conn.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
        raise
    file.after_write()
    return result


def revoke_pending(file: BufferFile) -> int:
    """pending → local-only, for good; returns how many. Works on a full disk while the
    reserve (or the WAL's own space) gives a step room; else SQLITE_FULL is raised."""
    try:
        return write(file, upload_queries.revoke_pending)
    except sqlite3.OperationalError as error:
        if not is_full(error):
            raise
    file.make_room(use_reserve=True)
    total = 0
    step = 0
    while True:
        try:
            revoked = write(
                file, lambda conn, n=REVOKE_STEPS[step]: upload_queries.revoke_pending(conn, n)
            )
        except sqlite3.OperationalError as error:
            if not is_full(error) or step + 1 == len(REVOKE_STEPS):
                raise
            file.truncate_wal()
            step += 1
            continue
        total += revoked
        file.truncate_wal()  # this step's pages into the file: the next one has the room
        if revoked == 0:
            file.restore_reserve()
            return total
