"""The daemon's file limit, and the connection budgets that must fit under it.

Every connection is a file descriptor. If the listeners together could hold more than the
process may open, a flood on one (the TCP port, which any local user can reach) would use
up the descriptors and the owner's agents and CLI could no longer connect to the Unix
sockets. So the soft limit is raised to the hard one at start (systemd's default is 1024
soft, 524288 hard), and the budgets are lowered if even then they would not fit.
"""

from __future__ import annotations

import resource
from dataclasses import dataclass

# Descriptors the daemon needs besides connections: SQLite's files (database, -wal, -shm,
# the reader's), the lock, stdio, the uploader's client sockets, a /proc read, threads.
RESERVED = 64
# Where the hard limit is "unlimited" (macOS), the most worth asking for.
UNLIMITED_TARGET = 65536


@dataclass(frozen=True)
class FileLimit:
    soft: int
    hard: int | None  # None: no hard limit

    def as_dict(self) -> dict[str, int | None]:
        return {"soft": self.soft, "hard": self.hard}


def raise_file_limit() -> FileLimit:
    """Raise the soft RLIMIT_NOFILE to the hard limit; the limits in force afterwards."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    unlimited = hard == resource.RLIM_INFINITY
    target = UNLIMITED_TARGET if unlimited else hard
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass  # macOS caps it lower (kern.maxfilesperproc): keep what we have
    return FileLimit(
        soft=UNLIMITED_TARGET if soft == resource.RLIM_INFINITY else soft,
        hard=None if unlimited else hard,
    )


def fit_budgets(wanted: dict[str, int], soft_limit: int, accept_burst: int) -> dict[str, int]:
    """Each listener's cap, lowered in proportion when all of them full at once, each with
    an accept burst of connections not yet refused, plus the reserve, would not fit."""
    room = soft_limit - RESERVED - accept_burst * len(wanted)
    total = sum(wanted.values())
    if total <= room:
        return dict(wanted)
    scale = max(room, len(wanted)) / total
    return {name: max(1, int(cap * scale)) for name, cap in wanted.items()}
