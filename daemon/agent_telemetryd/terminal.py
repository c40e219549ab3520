"""A daemon run in a terminal (`agent-telemetry daemon`, `make run`) ends when it closes.

SIGHUP means two things. Sent on purpose (`kill -HUP`, `systemctl reload`) it asks for a
reload. Sent by the kernel as the terminal the daemon runs in is closed, it is that
terminal's hangup: a program in the foreground of a closed terminal is expected to end,
not to run on detached with nowhere to log, holding the lock so that the next
`agent-telemetry daemon` is refused. The terminal itself tells the two apart: once hung
up, none of its descriptors is a terminal any more (isatty fails with EIO).
"""

from __future__ import annotations

import os

_STDIO = (0, 1, 2)


def terminal_stdio() -> tuple[int, ...]:
    """The standard descriptors that are the terminal the daemon runs in the foreground of
    (none under a service manager). A daemon started in the background (`… &` from a login
    script) is not ended by its terminal: a SIGHUP it gets later is a reload."""
    return tuple(fd for fd in _STDIO if _foreground_of(fd))


def _foreground_of(fd: int) -> bool:
    try:
        return os.isatty(fd) and os.tcgetpgrp(fd) == os.getpgrp()
    except OSError:
        return False


def hung_up(was_terminal: tuple[int, ...]) -> bool:
    """Whether the terminal the daemon started on has been hung up (closed)."""
    return bool(was_terminal) and not any(os.isatty(fd) for fd in was_terminal)
