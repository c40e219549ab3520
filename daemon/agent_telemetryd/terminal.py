"""A daemon run in a terminal (`agent-telemetry daemon`, `make run`) ends when it closes.

SIGHUP means two things. Sent on purpose (`kill -HUP`, `systemctl reload`) it asks for a
reload. Sent by the kernel as the terminal the daemon runs in is closed, it is that
terminal's hangup: a program in the foreground of a closed terminal is expected to end,
not to run on detached with nowhere to log, holding the lock so that the next
`agent-telemetry daemon` is refused. The terminal itself tells the two apart: once hung
up, none of its descriptors is a terminal any more (isatty fails with EIO).

Left at its default, SIGHUP ends a process, and the daemon reads it (`reload.start`) only
once it has started: one sent before (`kill -HUP` or a reload right after a start, a
terminal closed while the daemon starts) would end it before it served anything. So the
daemon's first step holds SIGHUP (`HeldHangup`), and the handler that takes over acts on
one that came meanwhile, as on any SIGHUP.
"""

from __future__ import annotations

import os
import signal
from types import FrameType

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


class HeldHangup:
    """SIGHUP held from the daemon process's first moment until its handler takes over:
    one that comes meanwhile is noted, not acted on.

    The terminal is read here too, at that first moment: a terminal hung up during the
    start has no terminal descriptors left to read later, and its hangup would then pass
    for a reload.
    """

    def __init__(self) -> None:
        self.terminal = terminal_stdio()
        self._arrived = False
        signal.signal(signal.SIGHUP, self._note)
        # A parent may have left SIGHUP blocked (a mask outlives exec): a SIGHUP sent
        # before the start waits there, and without this no reload would ever arrive.
        # Unblocked after the handler is in place, so that a pending one is noted.
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGHUP})

    def _note(self, signum: int, frame: FrameType | None) -> None:
        self._arrived = True

    def take(self) -> bool:
        """Whether a SIGHUP came while held; the next call says no, until another comes."""
        arrived, self._arrived = self._arrived, False
        return arrived
