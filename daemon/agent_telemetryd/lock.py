"""One daemon per runtime folder and one writer per buffer: an flock on a file that also
names the pid (paths.py says which files).

The flock is the lock; the pid in the file is only for the message a second start shows.
So taking and releasing the lock must never depend on writing that pid: on a disk full to
the last byte (exactly when a user runs `clear`), a write that needs a new block fails.
The pid is written over the old one in place, and a release leaves it there: neither
needs room the file does not already have.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path


class AlreadyRunningError(RuntimeError):
    def __init__(self, pid: int | None) -> None:
        self.pid = pid
        who = f" (pid {pid})" if pid else ""
        super().__init__(f"another agent-telemetry daemon is already running{who}")


class DaemonLock:
    """Held for the daemon's life; the kernel drops it if the process dies, so no stale lock."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock, or raise AlreadyRunningError; an OSError only when the file itself
        cannot be opened (a missing or unwritable folder), never for want of room. Taking
        a lock already held here does nothing."""
        if self._fd is not None:
            return
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise AlreadyRunningError(read_pid(self.path)) from None
        self._fd = fd
        _write_pid(fd)

    def release(self) -> None:
        if self._fd is None:
            return
        # Closing drops the flock; the pid stays in the file (readers go by the flock), so
        # the next start overwrites it in place instead of needing a new block.
        os.close(self._fd)
        self._fd = None


def _write_pid(fd: int) -> None:
    """The pid over whatever pid is there, then the file cut to its length: both fit in
    the space the file has once it has held any pid. A fresh file on a full disk has no
    room for it: the lock is held all the same, and a second start names no pid."""
    data = f"{os.getpid()}\n".encode()
    with contextlib.suppress(OSError):
        os.pwrite(fd, data, 0)
        os.ftruncate(fd, len(data))  # shorter than an older pid: shrinking needs no room


def read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip() or 0) or None
    except (OSError, ValueError):
        return None


def running_pid(path: Path) -> int | None:
    """The pid of the daemon holding the lock, or None when no daemon holds it."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return read_pid(path)
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)
