"""The spool folder as the daemon reads it: which files are ready, and their whole lines.

Names (the shims' contract): `<pid>-<hex>.ndjson` is complete; `.<pid>-<hex>.tmp` is being
written. A `.tmp` is ready too once no process has its pid and it has not changed for
`ABANDONED_AFTER_SECONDS`: a process killed while spooling never renames its file. The age
keeps a pid the daemon cannot see (another pid namespace sharing the data dir) from being
taken for dead while it writes. Only regular files of this user are read, never through a
symlink.
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

CHUNK_BYTES = 256 * 1024
ABANDONED_AFTER_SECONDS = 120.0
DROP_LINE_PREFIX = b'{"client_drops":'
_COMPLETE = re.compile(r"(\d+)-[0-9a-f]+\.ndjson")
_WRITING = re.compile(r"\.(\d+)-[0-9a-f]+\.tmp")


def ready_files(directory: Path, now: float) -> tuple[list[tuple[Path, int]], set[int]]:
    """(path, pid) of the files to take, oldest first — complete ones and abandoned partial
    ones — and the pids of live agents whose files are still being written."""
    found: list[tuple[float, Path, int]] = []
    still_writing: set[int] = set()
    try:
        entries = list(os.scandir(directory))
    except FileNotFoundError:
        return [], set()
    for entry in entries:
        complete, writing = _COMPLETE.fullmatch(entry.name), _WRITING.fullmatch(entry.name)
        if not complete and not writing:
            continue
        try:
            info = entry.stat(follow_symlinks=False)
        except FileNotFoundError:
            continue
        if not stat.S_ISREG(info.st_mode) or info.st_uid != os.geteuid():
            continue  # not a file an agent of this user wrote
        match = complete or writing
        assert match is not None
        pid = int(match.group(1))
        if writing:
            if alive(pid):
                still_writing.add(pid)
                continue
            if now - info.st_mtime < ABANDONED_AFTER_SECONDS:
                continue
        found.append((info.st_mtime, Path(entry.path), pid))
    found.sort()
    return [(path, pid) for _, path, pid in found], still_writing


def whole_lines(
    file: BinaryIO, max_line: int, on_oversize: Callable[[], None]
) -> Iterator[list[bytes]]:
    """Whole lines, a chunk at a time; an over-long line is skipped (and reported), and a
    last line without its newline (a writer killed mid-line) is given as it is.

    One list for every chunk read, empty when the chunk ended no line: a caller on the
    event loop gets a turn per chunk, so a file of gigabytes without a newline (junk, a
    sparse file) never holds the loop while it is read past."""
    carry = b""
    skipping = False
    while True:
        data = file.read(CHUNK_BYTES)
        if not data:
            break
        if skipping:
            newline = data.find(b"\n")
            if newline == -1:
                yield []
                continue
            data, skipping = data[newline + 1 :], False
        data = carry + data
        cut = data.rfind(b"\n")
        if cut == -1:
            carry = data
            yield []
        else:
            carry = data[cut + 1 :]
            lines = [line for line in data[:cut].split(b"\n") if line and not line.isspace()]
            long_lines = [line for line in lines if len(line) > max_line]
            if long_lines:
                lines = [line for line in lines if len(line) <= max_line]
                for _ in long_lines:
                    on_oversize()
            yield lines
        if len(carry) > max_line:
            carry, skipping = b"", True
            on_oversize()
    if carry.strip() and not skipping:
        yield [carry]


@contextlib.contextmanager
def open_spool_file(path: Path) -> Iterator[BinaryIO]:
    # O_NOFOLLOW: a symlink put in place of a spool file is not followed to someone's file.
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0))
    with os.fdopen(fd, "rb", buffering=0) as file:
        yield file


def file_key(name: str) -> str:
    """`<pid>-<random>` of either name form, so a `.tmp` taken once is known if renamed."""
    return name.lstrip(".").removesuffix(".ndjson").removesuffix(".tmp")


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_ready(directory: Path, now: float) -> int:
    """Delete the files the daemon would take in next (`ready_files`); how many there were.

    For `clear` and `forget`: what agents spooled before them holds events tracked before
    them, which would otherwise come back at the daemon's next intake, after a `forget`
    under the new anonymous id. A live agent's file still being written is left to it."""
    files, _ = ready_files(directory, now)
    removed = 0
    for path, _ in files:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
            removed += 1
    return removed


def waiting_files(directory: Path) -> int:
    """Complete spool files not taken yet (for `status`)."""
    try:
        return sum(1 for entry in os.scandir(directory) if _COMPLETE.fullmatch(entry.name))
    except OSError:
        return 0
