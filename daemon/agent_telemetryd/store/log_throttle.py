"""Log lines for what can happen at every group commit, every few ms: a full buffer that
refuses a runaway agent's events, a full disk that refuses its commits. A line each time was
tens of lines a second in the log, for as long as the agent ran, on what may be the disk
that is full. The counters hold every event (`dropped.buffer_full`, `dropped.write_error`);
the log only has to say that it happens: at once the first time, then a line a minute at
most, with the count since the last line.
"""

from __future__ import annotations

import time
from collections.abc import Callable

LOG_EVERY_SECONDS = 60.0


class ThrottledCount:
    """Counts something; says when to log it and how many happened since the last line."""

    def __init__(
        self, seconds: float = LOG_EVERY_SECONDS, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.seconds = seconds
        self._clock = clock
        self._logged_at = float("-inf")
        self._untold = 0

    def add(self, count: int) -> int | None:
        """Add `count`; the count to log now (all since the last line), or None: not yet."""
        self._untold += count
        now = self._clock()
        if now - self._logged_at < self.seconds:
            return None
        told, self._untold = self._untold, 0
        self._logged_at = now
        return told
