"""Room held back on the buffer's disk, so freeing space still works when it is full.

SQLite needs room to delete: every page a DELETE changes is first written to the WAL, and
`clear` makes a fresh 76 KiB buffer before it drops the old one (store/fresh.py). On a full
disk both fail, and a full disk is exactly when a user reaches for `clear`. So the daemon
keeps a small file of real blocks beside the buffer (allocated, not sparse: a hole would
free nothing) and deletes it right before an operation that frees space, when that
operation would otherwise fail for want of room. It is made again once there is room.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from agent_telemetryd.lazy_log import get_logger

log = get_logger("agent_telemetryd.store")

RESERVE_BYTES = 256 * 1024
RESERVE_NAME = "buffer.reserve"


class SpaceReserve:
    def __init__(self, directory: Path, size: int = RESERVE_BYTES) -> None:
        self.path = directory / RESERVE_NAME
        self.size = size

    @property
    def held(self) -> bool:
        try:
            return self.path.stat().st_size >= self.size
        except FileNotFoundError:
            return False

    def ensure(self) -> bool:
        """Hold the reserve if the disk has room for it and as much again; True if held.

        The "as much again" keeps the reserve from taking the last bytes the buffer itself
        could have used: it is made back only once space was really freed.
        """
        if self.held:
            return True
        try:
            stats = os.statvfs(self.path.parent)
        except OSError:
            return False
        if stats.f_bavail * stats.f_frsize < 2 * self.size:
            return False
        temporary = self.path.with_name(self.path.name + ".tmp")
        try:
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                os.posix_fallocate(fd, 0, self.size)
            finally:
                os.close(fd)
            os.replace(temporary, self.path)
        except OSError as error:
            with contextlib.suppress(OSError):
                temporary.unlink()
            log.warning("space_reserve_not_made", path=str(self.path), reason=error.strerror)
            return False
        return True

    def release(self) -> bool:
        """Give the reserve's blocks back to the disk; True if there was one to give."""
        try:
            self.path.unlink()
        except FileNotFoundError:
            return False
        log.warning("space_reserve_released", path=str(self.path), bytes=self.size)
        return True
