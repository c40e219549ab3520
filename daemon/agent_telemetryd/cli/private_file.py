"""Files a command writes with the user's data in them (an export, the report): readable by
the user alone, as the buffer is.

The mode is 0600 from the first byte whatever the umask, and an existing file is tightened
before anything is written into it: an export of the buffer into a file others can read
would undo the buffer's own privacy. Only a regular file is tightened: `-o /dev/null`,
`-o /dev/stdout` or a named pipe is a place to write, not a file the user keeps, and a
chmod there would change it for everyone (as root, /dev/null itself).
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

PRIVATE_MODE = 0o600


def open_private(path: Path) -> BinaryIO:
    """`path` opened for writing, truncated, readable by the user alone if it is a file."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_MODE)
    try:
        if stat.S_ISREG(os.fstat(fd).st_mode):
            os.fchmod(fd, PRIVATE_MODE)
        return os.fdopen(fd, "wb")
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
