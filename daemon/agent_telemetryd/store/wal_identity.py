"""Knowing the buffer's own write-ahead log, so a `-wal` from elsewhere is never replayed.

SQLite replays whatever `<db>-wal` lies next to the file when it opens it: a WAL left by
another database (a copied buffer, a restored backup, a stray file) silently overwrites
the buffer's pages with someone else's. SQLite cannot tell, because nothing in a WAL names
its database. The daemon can, from two facts of the WAL format (sqlite.org/walformat.html,
fileformat2.html §4, and wal.c):

- Every WAL starts with a 32-byte header holding two salts, and every frame carries the
  salts of its header; SQLite replays only frames whose salts match. A new WAL (the first
  write after open, when the writing connection has not restarted a WAL itself) gets two
  *random* salts; a restart (the log rewound after a complete checkpoint) adds one to
  salt-1 and draws a new salt-2 — when the connection that restarts it is the one that
  writes next. A connection that never restarted a WAL itself draws two random salts again
  when it writes the first frame after *another* connection rewound it (measured: 3.40).
- So, as long as only the buffer's writer connection ever restarts the WAL (the background
  checkpointer runs PASSIVE checkpoints only, which never rewind it), every header the
  buffer's WAL will carry is either the one recorded last or salt-1 plus a few.

The rule, then: the writer records (salt-1, salt-2) of the WAL in a sidecar file next to
the buffer whenever they change, which it checks after every write transaction; before the
first one of a connection it writes a no-op transaction to create the header and records
it, so no event is ever committed under salts nobody recorded. At open, before SQLite sees
the WAL, a WAL that SQLite would replay (a valid header and at least one whole frame) is
the buffer's when its salts are the recorded pair, or its salt-1 is the recorded one plus 1
to `MAX_UNRECORDED_RESTARTS` (restarts between a commit and the check after it; a crash can
land there). Anything else is not the buffer's: it is moved aside with its `-shm` and a log
line, never applied. A foreign WAL passes by chance with odds of about 16 in 2^32.

When the record cannot be written (a full disk or quota), the WAL goes on being the
buffer's, and its committed frames must stay acceptable at the next open:
- while the record still names the WAL (its salts, or salt-1 a few rewinds behind), the
  writer lets no checkpoint start that could rewind it (`may_rewind`): a crash then finds
  salt-1 within `MAX_UNRECORDED_RESTARTS` of the record. A checkpoint already under way
  may still end in one rewind; `REWINDS_WHILE_UNRECORDED` leaves room for it.
- a record that cannot name the WAL at all (a new WAL has random salts, and the record
  holds another WAL's or says there is none) is removed instead: without a record the WAL
  is trusted, as SQLite would, which keeps the buffer's events; protection comes back with
  the first record written.
The salts are read and recording tried again after every write transaction until it works.

Without a sidecar (a buffer from before this rule, or one whose sidecar was removed) there
is nothing to judge by and the WAL is trusted, as SQLite would. A database file that is
missing or empty beside a replayable WAL cannot own it: that WAL is moved aside too.
A `-shm` is never a risk on its own: the first connection to open a database rebuilds it
from the WAL, so it is only moved along with a foreign WAL.
"""

from __future__ import annotations

import contextlib
import os
import struct
from dataclasses import dataclass
from pathlib import Path

_MAGICS = (0x377F0682, 0x377F0683)  # checksums over little- / big-endian words
_FORMAT_VERSION = 3007000
_HEADER = struct.Struct(">8I")
_FRAME_HEADER_BYTES = 24
MAX_UNRECORDED_RESTARTS = 16
# Rewinds let happen past the record while it cannot be written: half the tolerance, so a
# checkpoint under way (and the commit that rewinds after it) cannot take salt-1 past it.
REWINDS_WHILE_UNRECORDED = MAX_UNRECORDED_RESTARTS // 2
SIDECAR_SUFFIX = ".wal-salts"
NO_WAL = "none"  # the sidecar's word for "this buffer has no WAL yet: any WAL is foreign"


@dataclass(frozen=True, slots=True)
class WalHeader:
    page_size: int
    salt1: int
    salt2: int


def wal_path(database: Path) -> Path:
    return Path(f"{database}-wal")


def sidecar_path(database: Path) -> Path:
    return Path(f"{database}{SIDECAR_SUFFIX}")


def parse_header(data: bytes) -> WalHeader | None:
    """The header if SQLite would take it as one (magic, version, page size, checksum)."""
    if len(data) < _HEADER.size:
        return None
    magic, version, page_size, _, salt1, salt2, sum1, sum2 = _HEADER.unpack_from(data)
    if magic not in _MAGICS or version != _FORMAT_VERSION:
        return None
    if page_size < 512 or page_size > 65536 or page_size & (page_size - 1):
        return None
    if _checksum(data[:24], big_endian=magic & 1 == 1) != (sum1, sum2):
        return None
    return WalHeader(page_size, salt1, salt2)


def _checksum(data: bytes, *, big_endian: bool) -> tuple[int, int]:
    # SQLite's walChecksumBytes: pairs of 32-bit words, s0 += x0 + s1; s1 += x1 + s0.
    words = struct.unpack((">" if big_endian else "<") + f"{len(data) // 4}I", data)
    s0 = s1 = 0
    for index in range(0, len(words), 2):
        s0 = (s0 + words[index] + s1) & 0xFFFFFFFF
        s1 = (s1 + words[index + 1] + s0) & 0xFFFFFFFF
    return s0, s1


def read_header(path: Path) -> tuple[WalHeader | None, int]:
    """The WAL's header (None when SQLite would not take it) and the file's size."""
    try:
        with path.open("rb") as file:
            size = os.fstat(file.fileno()).st_size
            return parse_header(file.read(_HEADER.size)), size
    except FileNotFoundError:
        return None, 0


def database_page_size(database: Path) -> int | None:
    """The page size in the database header (offset 16; 1 means 65536), None if unreadable."""
    try:
        with database.open("rb") as file:
            head = file.read(100)
    except OSError:
        return None
    if len(head) < 100 or not head.startswith(b"SQLite format 3\x00"):
        return None
    size = int.from_bytes(head[16:18], "big")
    return 65536 if size == 1 else size


def read_sidecar(database: Path) -> tuple[int, int] | str | None:
    """The recorded salts, NO_WAL, or None when there is no readable record."""
    try:
        text = sidecar_path(database).read_text().strip()
    except OSError:
        return None
    if text == NO_WAL:
        return NO_WAL
    try:
        first, second = text.split()
        return int(first, 16), int(second, 16)
    except ValueError:
        return None


def write_sidecar(database: Path, value: tuple[int, int] | str) -> None:
    """Record durably (a power cut must not leave a WAL newer than its record)."""
    text = value if isinstance(value, str) else f"{value[0]:08x} {value[1]:08x}"
    target = sidecar_path(database)
    temporary = target.with_name(target.name + ".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, (text + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temporary, target)
    _fsync_dir(target.parent)


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _replayable(header: WalHeader | None, size: int) -> bool:
    """A header SQLite takes and at least one whole frame after it."""
    return header is not None and size >= _HEADER.size + _FRAME_HEADER_BYTES + header.page_size


def holds_frames(database: Path) -> bool:
    """Whether the WAL beside `database` holds anything SQLite would replay."""
    return _replayable(*read_header(wal_path(database)))


def foreign_wal_reason(database: Path) -> str | None:
    """Why the WAL beside `database` is not the buffer's, or None when it may be replayed."""
    header, size = read_header(wal_path(database))
    if header is None or not _replayable(header, size):
        return None  # nothing SQLite would replay
    try:
        database_bytes = database.stat().st_size
    except FileNotFoundError:
        database_bytes = 0
    if database_bytes == 0:
        return "a write-ahead log without its database"
    page_size = database_page_size(database)
    if page_size is not None and page_size != header.page_size:
        return f"its page size {header.page_size} is not the buffer's {page_size}"
    recorded = read_sidecar(database)
    if recorded is None:
        return None  # nothing to judge by: trusted, as before the rule existed
    if recorded == NO_WAL:
        return "the buffer had no write-ahead log"
    salt1, salt2 = recorded
    restarts = (header.salt1 - salt1) & 0xFFFFFFFF
    if (restarts == 0 and header.salt2 == salt2) or 1 <= restarts <= MAX_UNRECORDED_RESTARTS:
        return None
    return "its salts are not the ones this buffer recorded"


class WalRecorder:
    """Records the WAL's salts whenever they change; used on the writer thread only."""

    def __init__(self, database: Path) -> None:
        self._database = database
        self._wal = wal_path(database)
        # What the record on disk says: salts, NO_WAL, or None when there is none.
        self._recorded: tuple[int, int] | str | None = read_sidecar(database)
        self._salts: tuple[int, int] | None = None  # the WAL's at the last read of its header
        self.recorded_current = True  # the record holds the salts the header had when read
        self.wal_bytes = 0
        self.header_seen = False  # at the last read: until one is seen, read at every note

    def note(self) -> None:
        """Read the header (one small read), record new salts, and keep the WAL's size.
        Raises OSError when the record cannot be written (see `may_rewind`)."""
        header, self.wal_bytes = read_header(self._wal)
        self.header_seen = header is not None
        if header is None:
            return  # empty or truncated: nothing SQLite could replay
        salts = self._salts = (header.salt1, header.salt2)
        if salts == self._recorded:
            self.recorded_current = True
            return
        try:
            write_sidecar(self._database, salts)
        except OSError:
            self.recorded_current = False
            if self._rewinds_past_record() is None:
                self._forget_record()
            raise
        self._recorded = salts
        self.recorded_current = True

    def may_rewind(self) -> bool:
        """Whether a checkpoint may start now that could rewind the WAL: always, unless the
        salts could not be recorded and the record is already `REWINDS_WHILE_UNRECORDED`
        rewinds behind. Rewinding past `MAX_UNRECORDED_RESTARTS` would make the buffer's
        own WAL foreign at the next open, and its committed events would be moved aside."""
        if self.recorded_current:
            return True
        behind = self._rewinds_past_record()
        return behind is None or behind < REWINDS_WHILE_UNRECORDED

    def _rewinds_past_record(self) -> int | None:
        """How many rewinds the header last read is past the record; None when the record
        does not name this WAL (or there is no record, which trusts any WAL)."""
        if not isinstance(self._recorded, tuple) or self._salts is None:
            return None
        if self._salts == self._recorded:
            return 0
        behind = (self._salts[0] - self._recorded[0]) & 0xFFFFFFFF
        return behind if 1 <= behind <= MAX_UNRECORDED_RESTARTS else None

    def _forget_record(self) -> None:
        # A record that would judge the buffer's own WAL foreign is worse than none: with
        # none, the WAL is trusted at the next open and no committed event is moved aside.
        # Removing a file needs no free space, unlike writing one.
        if self._recorded is None:
            return
        try:
            sidecar_path(self._database).unlink(missing_ok=True)
        except OSError:
            return
        _fsync_dir(self._database.parent)
        self._recorded = None

    def note_size(self) -> None:
        """Keep the WAL's size only: for a commit after which its salts cannot be new."""
        try:
            self.wal_bytes = os.stat(self._wal).st_size
        except FileNotFoundError:
            self.wal_bytes = 0
