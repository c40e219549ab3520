"""Files written with the user's data in them at a path the user named (an export, the
report, the file sender's output): readable by the user alone, as the buffer is.

The mode is 0600 from the first byte whatever the umask, and an existing file is tightened
before anything is written into it: an export of the buffer into a file others can read
would undo the buffer's own privacy. Only a regular file is tightened: `-o /dev/null`,
`-o /dev/stdout` or a named pipe is a place to write, not a file the user keeps, and a
chmod there would change it for everyone (as root, /dev/null itself).

In a folder every user may write in (sticky and world-writable, as /tmp), another user may
have put the name there first: a symbolic link to one of the user's files (`-o
/tmp/events.json` would then overwrite ~/.profile with the export), or a file of their own
(which they could read afterwards), or a hard link to a file of the user's. Those are
refused, by the rules Linux applies itself with fs.protected_symlinks, protected_regular
and protected_hardlinks, which many machines leave off.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

PRIVATE_MODE = 0o600


def open_private(path: Path, *, append: bool = False) -> BinaryIO:
    """`path` opened for writing, truncated (or, with `append`, at its end), readable by
    the user alone if it is a file.

    An OSError names what is wrong (see the module's docstring for shared folders)."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if append else os.O_TRUNC)
    try:
        folder = os.stat(path.parent)
    except OSError:
        folder = None  # the open below says what is wrong with it
    if folder is not None and _shared(folder):
        refusal = _someone_elses(path, folder)
        if refusal is not None:
            raise OSError(errno.EPERM, refusal, str(path))
        if not os.path.lexists(path):
            # Made new here: a link or a file someone puts there meanwhile is not used.
            flags |= os.O_EXCL | os.O_NOFOLLOW
    fd = os.open(path, flags, PRIVATE_MODE)
    try:
        info = os.fstat(fd)
        if stat.S_ISREG(info.st_mode):
            if info.st_uid != os.geteuid():
                # Root may chmod it, but its owner could still read what goes in.
                raise OSError(errno.EPERM, f"belongs to uid {info.st_uid}", str(path))
            os.fchmod(fd, PRIVATE_MODE)
        return os.fdopen(fd, "ab" if append else "wb")
    except BaseException:
        os.close(fd)
        raise


@contextlib.contextmanager
def written_privately(path: Path) -> Iterator[BinaryIO]:
    """`open_private(path)` as a context; when writing it fails (a full disk), the half
    written file is removed. Left there it kept the disk full (an export of 3 MB to a
    2 MiB file system left 2 MiB of it, and no byte free) after the command had said the
    write failed, so the file is of no use to anyone. A device is left alone."""
    handle = open_private(path)
    regular = stat.S_ISREG(os.fstat(handle.fileno()).st_mode)
    try:
        with handle:
            yield handle
    except BaseException:
        if regular:
            with contextlib.suppress(OSError):
                os.unlink(path)
        raise


def _shared(folder: os.stat_result) -> bool:
    """A folder where every user may make names and only a name's owner may remove it."""
    return bool(folder.st_mode & stat.S_ISVTX and folder.st_mode & stat.S_IWOTH)


def _someone_elses(path: Path, folder: os.stat_result) -> str | None:
    """Why the name `path` in a shared folder may be another user's trap, or None."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return None
    if stat.S_ISREG(info.st_mode) and info.st_nlink > 1:
        # Where fs.protected_hardlinks is off, anyone may link a file of the user's here.
        return "is one more name (a hard link) of a file kept elsewhere; choose another name"
    if info.st_uid in (os.geteuid(), folder.st_uid):
        return None
    if stat.S_ISLNK(info.st_mode):
        return f"is a symbolic link that uid {info.st_uid} made in a shared folder; not followed"
    if stat.S_ISREG(info.st_mode) or stat.S_ISFIFO(info.st_mode):
        return f"belongs to uid {info.st_uid}, in a shared folder; choose another name"
    return None
