"""This process's spool file: events the daemon could not take, kept for it on disk.

A file is written as `.<pid>-<random>.tmp` and renamed to `<pid>-<random>.ndjson` when it is
complete (at exit, when the daemon is reachable again, or when it is full), so a reader
never sees half a file. Each line is exactly a line as sent on ingest.sock. The folder is
`<data dir>/spool/`, 0700, and files are 0600. Bounded: SPOOL_FILE_BYTES a file and
SPOOL_FOLDER_BYTES for the folder (measured when writing, so several processes together
overshoot by at most one batch each); what does not fit is refused and counted by the caller.

Only the writer thread uses a Spool.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from agent_telemetry._paths import make_private_dirs, private_dir_problem

SPOOL_FILE_BYTES = 8 * 1024 * 1024
SPOOL_FOLDER_BYTES = 64 * 1024 * 1024
_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
_CREATE |= getattr(os, "O_NOFOLLOW", 0)
_IOV_GROUP = 512  # lines a writev() call (IOV_MAX is 1024 on Linux and macOS)


class SpoolUnavailable(OSError):
    """No private spool folder can be had (no data dir, or one that is not the user's)."""


class Spool:
    """The spool file being written, if any, and the rules for the folder."""

    def __init__(self, directory: Path | None) -> None:
        self.directory = directory
        self.sealed = 0  # files renamed into place by this process
        self._fd: int | None = None
        self._temporary: Path | None = None
        self._final: Path | None = None
        self._size = 0

    @property
    def is_open(self) -> bool:
        return self._fd is not None

    def write(self, lines: list[bytes]) -> tuple[int, str | None]:
        """Append as many of `lines` as the caps allow, whole lines only.

        Returns how many were written and, when some were not, why: `spool_full` (a cap)
        or `spool_failed` (the disk or the folder refused).
        """
        written = 0
        try:
            if self._fd is None:
                self._open()
            used = self._folder_bytes()
            while written < len(lines):
                file_room = SPOOL_FILE_BYTES - self._size
                folder_room = SPOOL_FOLDER_BYTES - used
                count, size = _fitting(lines, written, min(file_room, folder_room))
                if count:
                    self._append_lines(lines[written : written + count])
                    written += count
                    used += size
                    continue
                if folder_room <= file_room or self._size == 0:
                    return written, "spool_full"  # the folder is full, not only this file
                self.seal()  # this file is full: the next one may take the rest
                self._open()
                used = self._folder_bytes()
            return written, None
        except OSError:
            return written, "spool_failed"

    def write_control(self, line: bytes) -> bool:
        """Append a line that is not an event (a drop count) past the caps: it is tiny, and
        it is what tells the user about the events the caps refused."""
        try:
            if self._fd is None:
                self._open()
            self._append(line)
            return True
        except OSError:
            return False

    def seal(self) -> None:
        """Rename the file into place for the daemon (an empty one is removed)."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        temporary, final = self._temporary, self._final
        try:
            os.close(fd)
            assert temporary is not None and final is not None
            if self._size:
                os.rename(temporary, final)
                self.sealed += 1
            else:
                os.unlink(temporary)
        except OSError:
            pass  # the folder went away: nothing more can be done for this file

    def discard(self) -> None:
        """Remove the file being written, unread (the user turned telemetry off)."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            os.close(fd)
            if self._temporary is not None:
                os.unlink(self._temporary)
        except OSError:
            pass

    def forget(self) -> None:
        """In a forked child: close this copy of the parent's file, leave the file to it."""
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)

    # -- the file and the folder -----------------------------------------------------------

    def _open(self) -> None:
        directory = self.directory
        if directory is None:
            raise SpoolUnavailable("no data dir")
        _make_spool_dir(directory)
        name = f"{os.getpid()}-{os.urandom(6).hex()}"
        temporary = directory / f".{name}.tmp"
        fd = os.open(temporary, _CREATE, 0o600)
        try:
            os.fchmod(fd, 0o600)  # whatever the umask
        except OSError:
            os.close(fd)
            os.unlink(temporary)
            raise
        self._fd, self._size = fd, 0
        self._temporary, self._final = temporary, directory / f"{name}.ndjson"

    def _append_lines(self, lines: list[bytes]) -> None:
        # writev() in groups, not one join: copying megabytes into one bytes object would
        # hold the GIL for milliseconds, and a caller in track() would wait that long.
        assert self._fd is not None
        start = self._size
        try:
            for first in range(0, len(lines), _IOV_GROUP):
                group = lines[first : first + _IOV_GROUP]
                expected = sum(map(len, group))
                done = os.writev(self._fd, group)
                if done < expected:  # a short write: finish this group the plain way
                    rest = memoryview(b"".join(group))[done:]
                    while rest:
                        step = os.write(self._fd, rest)
                        rest = rest[step:]
                self._size += expected
        except OSError:
            # A full disk may cut a line short: take the file back to its last whole line.
            os.ftruncate(self._fd, start)
            self._size = start
            raise

    def _append(self, data: bytes) -> None:
        assert self._fd is not None
        view = memoryview(data)
        done = 0
        try:
            while done < len(view):
                done += os.write(self._fd, view[done:])
        except OSError:
            # A full disk may cut a line short: take the file back to its last whole line.
            os.ftruncate(self._fd, self._size)
            raise
        self._size += done

    def _folder_bytes(self) -> int:
        # A few dozen stat() calls at most: files are large, and the daemon deletes them.
        assert self.directory is not None
        total = 0
        with os.scandir(self.directory) as entries:
            for entry in entries:
                try:
                    if entry.is_file(follow_symlinks=False):
                        total += entry.stat(follow_symlinks=False).st_size
                except OSError:
                    continue  # removed by the daemon meanwhile
        return total


def _fitting(lines: list[bytes], start: int, room: int) -> tuple[int, int]:
    """How many lines from `start` fit in `room` bytes, and their size."""
    size = 0
    index = start
    while index < len(lines):
        length = len(lines[index])
        if size + length > room:
            break
        size += length
        index += 1
    return index - start, size


def _make_spool_dir(path: Path) -> None:
    """`path` as this user's own 0700 folder, made if missing; SpoolUnavailable otherwise.

    Folders that already exist are never changed — not the spool folder, not its parent,
    which may be anything a caller named (even /tmp). A spool folder that exists but is
    not private is not used. Only a folder made here is set to 0700 (whatever the umask).
    """
    make_private_dirs(path.parent)  # the data dir, as the daemon makes it
    made = False
    with contextlib.suppress(FileExistsError):
        path.mkdir(mode=0o700)
        made = True
    if made:
        os.chmod(path, 0o700)
    problem = private_dir_problem(path)
    if problem is not None:
        raise SpoolUnavailable(f"{path} {problem}")
