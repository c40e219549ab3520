"""Events tracked while the interpreter finalises: the caller's thread hands them over.

Once the interpreter finalises (module teardown, the finalisers of module-level objects),
the writer thread can no longer run: it waits for a GIL it will never get again. Waiting
for it would cost the caller the whole late budget and lose the event anyway. So the
caller writes the event itself, on a connection of its own (the writer's may hold half a
line) or, failing that, to a spool file of its own, sealed at once: nothing runs after it.

Only the finalising thread runs then, so the client's counters are read and changed here
without its locks, which a frozen writer may be holding.
"""

from __future__ import annotations

import contextlib
import socket
import time
from pathlib import Path

from agent_telemetry._consent import mode_is_off
from agent_telemetry._socket import SEND_FLAGS, open_connection, wait_ready
from agent_telemetry._spool import Spool


def send_lines(path: str | None, lines: list[bytes], deadline: float) -> int:
    """Write `lines` on a new connection until `deadline`; how many went whole.

    A line cut short by the deadline is discarded by the daemon when the connection closes.
    """
    sock = open_connection(path) if path is not None else None
    if sock is None:
        return 0
    whole = 0
    try:
        for line in lines:
            if not _send_all(sock, line, deadline):
                break
            whole += 1
    finally:
        with contextlib.suppress(OSError):
            sock.close()
    return whole


def _send_all(sock: socket.socket, data: bytes, deadline: float) -> bool:
    view = memoryview(data)
    done = 0
    while done < len(view):
        try:
            done += sock.send(view[done:], SEND_FLAGS)
        except (BlockingIOError, InterruptedError):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            wait_ready([], [sock], remaining)
        except OSError:
            return False  # the daemon went away
    return True


def spool_lines(
    directory: Path | None, lines: list[bytes], control: bytes | None
) -> tuple[int, str | None, bool]:
    """Write `lines` and the drop-count line `control` to a spool file of their own, sealed.

    Returns how many of `lines` were written, the drop reason for the rest, and whether
    `control` was written.
    """
    if mode_is_off():
        return 0, "mode_off", False
    spool = Spool(directory)
    written, reason = spool.write(lines) if lines else (0, None)
    reported = control is not None and spool.write_control(control)
    spool.seal()
    return written, reason, reported
