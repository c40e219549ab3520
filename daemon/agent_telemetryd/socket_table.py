"""Whether some process listens on a Unix socket path, read from the kernel's socket table.

Connecting to find out would not do: a socket unit holding the path for a stopped daemon
starts the daemon on any connection. Both the CLI (`status`: "its sockets are open") and
a starting daemon (a socket file that is not stale) ask.
"""

from __future__ import annotations

from pathlib import Path

_LISTENING = 0x10000  # __SO_ACCEPTCON in the Flags column


def listening_at(path: Path) -> bool:
    """True when a listening Unix socket is bound at `path`. False where there is no
    /proc/net/unix (macOS): the answer is then unknown, and callers go on as before."""
    try:
        table = Path("/proc/net/unix").read_text(errors="replace")
    except OSError:
        return False
    for line in table.splitlines()[1:]:
        fields = line.split(None, 7)
        if len(fields) == 8 and fields[7] == str(path) and int(fields[3], 16) & _LISTENING:
            return True
    return False
