"""How many log lines something an agent can make happen at will may take. No I/O.

A bad event, a malformed request, a refused peer: an agent in a loop repeats them as fast
as the daemon answers (160,000 bad lines a second on ingest.sock). A line for each of the
first hundred says what is wrong while someone is looking; after that a line every
thousandth still made ~160 lines a second, 3 GB of log a day, on what may be the disk the
buffer needs. So after the first hundred, a line a minute at most, whatever the rate: its
`*_so_far` count says how many happened. `status` has every count.
"""

from __future__ import annotations

import time
from collections.abc import Callable

LOG_FIRST = 100
LOG_EVERY_SECONDS = 60.0


class LogBudget:
    """`allows()`: whether this occurrence gets a log line; `seen`: how many there were,
    the `*_so_far` count its lines carry."""

    def __init__(
        self,
        first: int = LOG_FIRST,
        seconds: float = LOG_EVERY_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.first = first
        self.seconds = seconds
        self._clock = clock
        self._seen = 0
        self._logged_at = float("-inf")

    @property
    def seen(self) -> int:
        return self._seen

    def allows(self, occurrences: int = 1) -> bool:
        """Whether `occurrences` more, met at once (a read's lines), get a log line."""
        self._seen += occurrences
        if self._seen - occurrences < self.first:
            return True
        now = self._clock()
        if now - self._logged_at < self.seconds:
            return False
        self._logged_at = now
        return True
