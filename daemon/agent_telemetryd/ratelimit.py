"""Per-source upload eligibility limits, e.g. 60 a minute and 1,000 an hour (DESIGN §9).

A sliding window per rule: an event is eligible when, for every rule, fewer than `count`
events of its source became eligible in the last `per_seconds`. A burst up to the count
goes through at once; the excess is kept locally as `rate_limited`. No I/O.

A source is whatever name the agent reports, so one runaway program could rotate names
to dodge its own limit. All sources together are therefore held to ALL_SOURCES_FACTOR
times each rule as well (600 a minute and 10,000 an hour with the defaults).
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Sequence

from agent_telemetryd.config import RateRule

MAX_SOURCES = 10_000
ALL_SOURCES_FACTOR = 10


class UploadRateLimiter:
    def __init__(self, rules: Sequence[RateRule], max_sources: int = MAX_SOURCES) -> None:
        self._rules = tuple(rules)
        self._max_sources = max_sources
        # source -> one deque of eligible-event times per rule, oldest first
        self._windows: OrderedDict[str, tuple[deque[float], ...]] = OrderedDict()
        self._all_sources = tuple(deque[float]() for _ in self._rules)

    def __call__(self, source: str, now: float) -> bool:
        windows = self._windows.get(source)
        if windows is None:
            windows = tuple(deque() for _ in self._rules)
            self._windows[source] = windows
            if len(self._windows) > self._max_sources:
                # The least recently seen source forgets its history; a bounded map.
                self._windows.popitem(last=False)
        else:
            self._windows.move_to_end(source)
        if not _room(self._rules, windows, now, 1) or not _room(
            self._rules, self._all_sources, now, ALL_SOURCES_FACTOR
        ):
            return False
        for window in (*windows, *self._all_sources):
            window.append(now)
        return True


def _room(
    rules: tuple[RateRule, ...], windows: Sequence[deque[float]], now: float, factor: int
) -> bool:
    for rule, window in zip(rules, windows, strict=True):
        horizon = now - rule.per_seconds
        while window and window[0] <= horizon:
            window.popleft()
        if len(window) >= rule.count * factor:
            return False
    return True
