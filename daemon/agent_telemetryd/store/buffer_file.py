"""The buffer's file as the writer thread holds it: its connection, its WAL, room on disk,
and replacing it with a fresh file.

Every method runs on the writer thread (store/writer.py), between transactions, so none
of this races a commit. What each step is for:
- `after_write`: after every write transaction, the WAL's salts are recorded when they
  changed (store/wal_identity.py) and its size is handed to the checkpointer
  (store/checkpoint.py), which may ask for the WAL to be truncated: done here, since only
  this connection may rewind the WAL. While the salts cannot be recorded, no checkpoint
  starts that could rewind the WAL past its record.
- `make_room`: SQLITE_FULL met. First the WAL's own space is given back (a TRUNCATE
  checkpoint: its frames go into pages the buffer file already has, mostly); for an
  operation that frees space (clear, forget, retention, eviction) the reserve too
  (store/reserve.py). Then the caller tries once more.
- `replace`: a fresh file in place of this one (store/fresh.py): for `clear`, deleting the
  old one; for a corrupt one, keeping it under another name. The connection is reopened,
  and `generation` counts the files, so readers know to reopen theirs.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from agent_telemetry._paths import SPOOL_DIR_NAME
from agent_telemetryd.lazy_log import get_logger
from agent_telemetryd.spool_files import remove_ready
from agent_telemetryd.store import fresh
from agent_telemetryd.store.checkpoint import Checkpointer
from agent_telemetryd.store.database import is_full, open_buffer
from agent_telemetryd.store.reserve import SpaceReserve
from agent_telemetryd.store.wal_identity import WalRecorder

log = get_logger("agent_telemetryd.store")

CLEAR = "clear"
HEAL = "heal"


@dataclass(frozen=True)
class Replaced:
    """What replacing the file did: events in the old one, and where it was kept."""

    events: int
    kept: Path | None
    unreadable: tuple[str, ...] = ()


class BufferFile:
    def __init__(
        self,
        path: Path,
        conn: sqlite3.Connection,
        *,
        reserve: SpaceReserve | None = None,
        checkpointer: Checkpointer | None = None,
        exclusive: bool = False,
    ) -> None:
        self.path = path
        self.conn = conn
        # Opened in exclusive locking mode (a writer with the file to itself, see
        # store/database.py `connect`): a fresh file is opened the same way.
        self.exclusive = exclusive
        self.generation = 0
        self.reserve = reserve
        self.checkpointer = checkpointer
        # Put into a fresh file when a corrupt one no longer gives it (set by the Buffer).
        self.anonymous_id: str | None = None
        self._recorder = WalRecorder(path)
        self._checkpoints_ended: int | None = None  # as the last note saw it
        self._read_header_next = True
        self.page_size: int = conn.execute("PRAGMA page_size").fetchone()[0]
        self._bound_wal()

    def after_write(self) -> None:
        self._note_wal()
        checkpointer = self.checkpointer
        if checkpointer is None:
            return
        if not self._recorder.may_rewind():
            # The salts could not be recorded and the record is as far behind as it may
            # be: a checkpoint now would let the WAL rewind past what the next open takes
            # for the buffer's own, and a crash would move committed events aside. The WAL
            # grows meanwhile; checkpoints resume with the first record written.
            return
        if checkpointer.truncate_wanted:
            checkpointer.truncate_wanted = False
            self.truncate_wal()
        else:
            checkpointer.wal_size_seen(self._recorder.wal_bytes)

    def _bound_wal(self) -> None:
        # The checkpointer goes by the WAL file's size, but SQLite keeps a rewound WAL at
        # its largest size and writes it over from the start: once the file had reached
        # the limit, every commit started a checkpoint (at 10,000 events/s, one every
        # other group commit, each with its fsyncs and a new salt record). With a size
        # limit under the checkpointer's, SQLite cuts the file back at the first commit
        # after each rewind, so its size is again what the WAL holds.
        if self.checkpointer is not None:
            self.conn.execute(f"PRAGMA journal_size_limit = {self.checkpointer.limit // 2}")

    def truncate_wal(self) -> bool:
        """Copy what is left of the WAL into the file and cut the WAL to zero bytes, without
        waiting for readers (they make it a partial checkpoint instead); True if done."""
        if not self._recorder.may_rewind():
            # Truncating rewinds the WAL: not while its salts cannot be recorded and the
            # record is already as far behind as it may be (see `after_write`).
            return False
        conn = self.conn
        conn.execute("PRAGMA busy_timeout = 0")
        try:
            busy, _, _ = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        except sqlite3.OperationalError:
            busy = 1
        finally:
            conn.execute("PRAGMA busy_timeout = 5000")
        self._note_wal()
        # This checkpoint may have copied every frame without cutting the WAL (a reader in
        # the way): then the next commit rewinds it, and the note after it must see that.
        self._read_header_next = True
        return not busy

    def _note_wal(self) -> None:
        was_recorded = self._recorder.recorded_current
        try:
            if self._salts_may_be_new():
                self._recorder.note()
            else:
                self._recorder.note_size()
        except OSError as error:
            # The record could not be written (a full disk, a quota): the WAL is still the
            # buffer's, so it must stay acceptable at the next open. The recorder removed a
            # record that cannot name it, and checkpoints wait while one that can falls
            # behind (`may_rewind`); the header is read and recording tried again at the
            # next commit.
            self._read_header_next = True
            if was_recorded:  # once, not at every commit while the disk stays full
                log.warning("wal_salts_not_recorded", reason=error.strerror)
            return
        if not was_recorded and self._recorder.recorded_current:
            log.info("wal_salts_recorded_again")

    def _salts_may_be_new(self) -> bool:
        """Whether the WAL may have been rewound (new salts) since its header was last read.

        Reading it (an open, a read, a checksum) cost ~100 µs of CPU at every commit on a
        writer thread that runs cold once a turn: 0.7% of a core at 67 commits a second.
        But only this connection rewinds the WAL, at its first write that begins after a
        checkpoint copied every frame (the checkpointer's, or its own TRUNCATE, after
        which the WAL has no header until the next write). So the header is read while a
        checkpoint runs, at the first note after one ended and at the note after that (the
        rewind may come with the commit after the one that saw it end), and until a
        header was seen at all; at other commits only the size is taken.
        """
        checkpointer = self.checkpointer
        if checkpointer is None or not self._recorder.header_seen:
            return True
        # `busy` before `ended`: the checkpointer counts one as ended before it is idle.
        running = checkpointer.busy
        ended = checkpointer.ended
        changed = running or ended != self._checkpoints_ended
        self._checkpoints_ended = ended
        read, self._read_header_next = self._read_header_next or changed, changed
        return read

    def make_room(self, *, use_reserve: bool) -> bool:
        """Give space back for one more try of what just failed with SQLITE_FULL."""
        released = use_reserve and self.reserve is not None and self.reserve.release()
        truncated = self.truncate_wal()
        return released or truncated

    def restore_reserve(self) -> None:
        if self.reserve is not None:
            self.reserve.ensure()

    def replace(self, kind: str) -> Replaced:
        """A fresh file in place of this one: the old one deleted (CLEAR) or kept (HEAL)."""
        old = self.conn
        if kind == CLEAR:
            events = int(old.execute("SELECT count(*) FROM events").fetchone()[0])
            carry = fresh.read_carry(old)
        else:
            events = 0
            carry = fresh.read_carry(old, salvage=True)
            if self.anonymous_id and not any(key == "anonymous_id" for key, _ in carry.meta):
                carry.meta.append(("anonymous_id", self.anonymous_id))
        built = self._build(carry)
        kept = fresh.put_in_place(
            self.path, built, keep_old_as=None if kind == CLEAR else "corrupt"
        )
        if kind == CLEAR:
            set_aside = fresh.remove_set_aside(self.path)
            if set_aside:
                log.info("set_aside_files_removed", files=set_aside)
            # The spool beside the buffer holds events tracked before this clear too.
            spooled = remove_ready(self.path.parent / SPOOL_DIR_NAME, time.time())
            if spooled:
                log.info("spool_files_removed", files=spooled)
        with contextlib.suppress(sqlite3.Error):
            old.close()  # the old inode: its last checkpoint goes there, or nowhere
        self.conn = open_buffer(self.path, autocheckpoint=False, exclusive=self.exclusive)
        self.page_size = self.conn.execute("PRAGMA page_size").fetchone()[0]
        self._recorder = WalRecorder(self.path)
        self._bound_wal()
        self.generation += 1
        self.restore_reserve()
        return Replaced(events, kept, tuple(carry.unreadable))

    def _build(self, carry: fresh.Carry) -> Path:
        try:
            return fresh.build(self.path, carry)
        except (OSError, sqlite3.Error) as error:
            if not is_full(error) or self.reserve is None or not self.reserve.release():
                raise
        return fresh.build(self.path, carry)  # in the reserve's room

    def close(self) -> None:
        self.conn.close()
