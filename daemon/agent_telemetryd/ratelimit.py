"""Upload rate limits that shape, not discard. Pure: no I/O, times in ms.

Each event received while uploading is given the time it becomes eligible for upload.
A normal busy run is not cut: what is over the limit *waits* (still pending) and goes in
later windows, oldest first. Only what a source has waiting beyond its backlog cap is
refused (the caller keeps it local as `rate_limited`, for good).

Per source (the agent name), a sliding window per rule: an event becomes eligible at the
earliest time, not before its arrival nor before the source's previous event, at which
fewer than `count` of that source's events became eligible in the `per` seconds before.
So a quiet source may send a rule's whole count at once (the burst), and then one event
per `per / count` on average, exactly as the rule reads: never more than `count` in any
window of `per` seconds.

A source is whatever name the agent reports, so a runaway program could rotate names to
dodge its own limit. All sources together are therefore held to ALL_SOURCES_FACTOR times
each rule (600 a minute, 10,000 an hour with the defaults) and ALL_SOURCES_FACTOR times
the backlog cap. That limit counts in clock-aligned windows (each minute, each hour):
eligibility times of different sources interleave, and a window per clock minute can be
filled in any order at O(1) a event, where a sliding window over every source's future
would cost a scan per event. It may let up to twice a rule through across the edge of two
windows — it is a guard against dodging, not the per-source promise.

Times are the wall clock's. When it is set back (an NTP step, a clock that was ahead
corrected), every time the limiter holds is moved back as far: the events before the step
happened as long ago as they did, not in the future, where they held each source's next
events until the clock caught up (an hour set back: an hour's wait, then the backlog full
and everything after it kept local, for one event sent before the step). The caller is told
(`on_clock_back`), so the waiting events' stored times move too. A clock set forward needs
nothing: the time passed, for all the limiter can tell (a laptop waking from sleep).
"""

from __future__ import annotations

import heapq
from bisect import bisect_right
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from agent_telemetry._wire import format_timestamp
from agent_telemetryd.config_values import RateRule

MAX_SOURCES = 10_000
ALL_SOURCES_FACTOR = 10
DEFAULT_BACKLOG = 10_000
# Dead history (sources idle for a whole window, past clock windows) is dropped at most
# this often: a pass over every source, not per event.
_PRUNE_EVERY_MS = 1000
# A step back smaller than this is not a clock set back: arrivals stamped a moment apart
# may reach the limiter out of order.
CLOCK_BACK_MS = 1000


@dataclass(frozen=True, slots=True)
class _Rule:
    count: int
    per_ms: int


class _Schedule:
    """One source's eligibility times, non-decreasing, from `now - longest window` on, and
    the uuid each time was given to (None when the event came without one)."""

    __slots__ = ("decided", "start", "times", "uuids")

    def __init__(self) -> None:
        self.times: list[int] = []
        self.uuids: list[str | None] = []
        self.start = 0  # times before this index left every window
        # uuid → its time, for the times still live: an event sent again (a client's
        # retry, a spool file read twice) is stored once, so it must not take a second
        # place in the window or the backlog.
        self.decided: dict[str, int] = {}

    def add(self, at_ms: int, uuid: str | None) -> None:
        self.times.append(at_ms)
        self.uuids.append(uuid)
        if uuid is not None:
            self.decided[uuid] = at_ms

    def forget_before(self, horizon_ms: int) -> None:
        times, uuids, decided, start = self.times, self.uuids, self.decided, self.start
        while start < len(times) and times[start] <= horizon_ms:
            uuid = uuids[start]
            if uuid is not None:
                decided.pop(uuid, None)
            start += 1
        if start > 1024 and start * 2 > len(times):
            del times[:start]  # give the memory back now and then, not per event
            del uuids[:start]
            start = 0
        self.start = start

    def live(self) -> int:
        return len(self.times) - self.start

    def waiting(self, now_ms: int) -> int:
        return len(self.times) - bisect_right(self.times, now_ms, lo=self.start)

    def drop_after(self, now_ms: int) -> None:
        """Forget the times after `now_ms` (the events waiting for them are gone)."""
        keep = bisect_right(self.times, now_ms, lo=self.start)
        for uuid in self.uuids[keep:]:
            if uuid is not None:
                self.decided.pop(uuid, None)
        del self.times[keep:]
        del self.uuids[keep:]

    def shift(self, delta_ms: int) -> None:
        self.times[:] = [at + delta_ms for at in self.times]
        for uuid, at in self.decided.items():
            self.decided[uuid] = at + delta_ms

    def earliest(self, arrival_ms: int, rules: Sequence[_Rule]) -> int:
        times = self.times
        at = max(arrival_ms, times[-1]) if len(times) > self.start else arrival_ms
        live = len(times) - self.start
        for rule in rules:
            if live >= rule.count:
                # The count-th most recent must have left the window.
                at = max(at, times[-rule.count] + rule.per_ms)
        return at


class _ClockWindows:
    """All sources together: events per clock-aligned window, for each rule."""

    def __init__(self, rules: Sequence[_Rule], factor: int) -> None:
        self._rules = tuple(rules)
        self._caps = tuple(rule.count * factor for rule in rules)
        self._counts: tuple[dict[int, int], ...] = tuple({} for _ in rules)
        # A full window points at a later one that may have room (path-compressed), so
        # finding room past a long run of full windows costs little.
        self._next: tuple[dict[int, int], ...] = tuple({} for _ in rules)
        self._pers = tuple(rule.per_ms for rule in rules)
        self._tables = tuple(zip(self._pers, self._caps, self._counts, self._next, strict=True))

    def earliest(self, at_ms: int) -> int:
        moved = True
        while moved:
            moved = False
            for index, per_ms in enumerate(self._pers):
                window = at_ms // per_ms
                if window in self._next[index]:  # full: find the first that is not
                    at_ms = self._open(index, window) * per_ms
                    moved = True
        return at_ms

    def add(self, at_ms: int) -> None:
        for per_ms, cap, counts, following in self._tables:
            window = at_ms // per_ms
            count = counts[window] = counts.get(window, 0) + 1
            if count >= cap:
                following[window] = window + 1

    def _open(self, index: int, window: int) -> int:
        following = self._next[index]
        path = []
        while window in following:
            path.append(window)
            window = following[window]
        for full in path:
            following[full] = window
        return window

    def forget_before(self, now_ms: int) -> None:
        for index, rule in enumerate(self._rules):
            current = now_ms // rule.per_ms
            for table in (self._counts[index], self._next[index]):
                for window in [w for w in table if w < current]:
                    del table[window]


class UploadRateLimiter:
    """`limiter(source, now_ms, uuid)` → when the event becomes eligible (ms; `now_ms` when
    at once), or None when its source already has `backlog` events waiting (or all sources
    together ten times that): that event is kept local for good. An event whose uuid was
    given a time still in the windows gets that time again and takes no new place: the
    buffer stores it once."""

    def __init__(
        self,
        rules: Sequence[RateRule],
        backlog: int = DEFAULT_BACKLOG,
        *,
        max_sources: int = MAX_SOURCES,
        on_clock_back: Callable[[int, int], None] | None = None,
    ) -> None:
        """`on_clock_back(back_ms, now_ms)`: called when the clock was set back by
        `back_ms`, after the limiter moved its own times back."""
        self.rules = tuple(rules)
        self.backlog = backlog
        self._rules = tuple(_Rule(r.count, round(r.per_seconds * 1000)) for r in rules)
        self._longest_ms = max((rule.per_ms for rule in self._rules), default=0)
        self._max_sources = max_sources
        self._sources: OrderedDict[str, _Schedule] = OrderedDict()
        self._all = _ClockWindows(self._rules, ALL_SOURCES_FACTOR)
        self._waiting: list[int] = []  # every source's future eligibility times, a heap
        self._pruned_at = 0
        self._latest_ms = 0  # the latest `now_ms` seen
        self._on_clock_back = on_clock_back

    def __call__(self, source: str, now_ms: int, uuid: str | None = None) -> int | None:
        if now_ms > self._latest_ms:
            self._latest_ms = now_ms
        elif now_ms < self._latest_ms - CLOCK_BACK_MS:
            self._clock_went_back(self._latest_ms - now_ms, now_ms)
        if now_ms - self._pruned_at >= _PRUNE_EVERY_MS:
            self._prune(now_ms)
        schedule = self._schedule(source)
        schedule.forget_before(now_ms - self._longest_ms)
        if uuid is not None:
            known = schedule.decided.get(uuid)
            if known is not None:
                return known  # the same event again: the buffer keeps the first
        at = self._all.earliest(schedule.earliest(now_ms, self._rules))
        if at > now_ms and self._backlog_full(schedule, now_ms):
            return None  # it would wait behind a full backlog: kept local instead
        self._record(schedule, at, now_ms, uuid)
        return at

    def _backlog_full(self, schedule: _Schedule, now_ms: int) -> bool:
        waiting = self._waiting
        while waiting and waiting[0] <= now_ms:
            heapq.heappop(waiting)
        return (
            schedule.waiting(now_ms) >= self.backlog
            or len(waiting) >= self.backlog * ALL_SOURCES_FACTOR
        )

    def forget_waiting(self, now_ms: int) -> None:
        """The waiting events were deleted (`clear`): their places are free again. What
        became eligible by `now_ms` keeps its place: it may have reached the backend."""
        for schedule in self._sources.values():
            schedule.drop_after(now_ms)
        self._waiting = []
        self._recount_all()

    def _recount_all(self) -> None:
        self._all = _ClockWindows(self._rules, ALL_SOURCES_FACTOR)
        for schedule in self._sources.values():
            for at in schedule.times[schedule.start :]:
                self._all.add(at)

    def _clock_went_back(self, back_ms: int, now_ms: int) -> None:
        """Move every held time back by `back_ms`: see the module's docstring."""
        for schedule in self._sources.values():
            schedule.shift(-back_ms)
        self._recount_all()
        # A uniform shift keeps the heap a heap.
        self._waiting = [at - back_ms for at in self._waiting]
        self._latest_ms = now_ms
        self._pruned_at = 0  # prune from the new clock on, not after it caught up
        if self._on_clock_back is not None:
            self._on_clock_back(back_ms, now_ms)

    def seed(
        self,
        source: str,
        times_ms: Iterable[int],
        now_ms: int,
        uuids: Iterable[str | None] | None = None,
    ) -> None:
        """Take what the buffer says was made eligible (or is waiting) for `source`, in
        order, so a restart or a reload does not hand every source a fresh window; with
        `uuids` (one a time), a retry of one of those events is known for what it is."""
        self._latest_ms = max(self._latest_ms, now_ms)
        schedule = self._schedule(source)
        pairs = zip(times_ms, uuids, strict=True) if uuids is not None else _unnamed(times_ms)
        for at, uuid in sorted(pairs, key=lambda pair: pair[0]):
            self._record(schedule, at, now_ms, uuid)

    def waiting(self, source: str, now_ms: int) -> int:
        schedule = self._sources.get(source)
        return schedule.waiting(now_ms) if schedule is not None else 0

    def _schedule(self, source: str) -> _Schedule:
        schedule = self._sources.get(source)
        if schedule is None:
            schedule = self._sources[source] = _Schedule()
            if len(self._sources) > self._max_sources:
                # The least recently seen source forgets its history: a bounded map.
                self._sources.popitem(last=False)
        else:
            self._sources.move_to_end(source)
        return schedule

    def _record(self, schedule: _Schedule, at_ms: int, now_ms: int, uuid: str | None) -> None:
        schedule.add(at_ms, uuid)
        self._all.add(at_ms)
        if at_ms > now_ms:
            heapq.heappush(self._waiting, at_ms)

    def _prune(self, now_ms: int) -> None:
        horizon = now_ms - self._longest_ms
        idle = []
        for source, schedule in self._sources.items():
            schedule.forget_before(horizon)
            if not schedule.live():
                idle.append(source)
        for source in idle:
            del self._sources[source]
        self._all.forget_before(now_ms)
        self._pruned_at = now_ms


def _unnamed(times_ms: Iterable[int]) -> Iterable[tuple[int, str | None]]:
    return ((at, None) for at in times_ms)


# Meta key in the buffer: the rules (and backlog cap) its waiting events were placed under.
PLACED_UNDER = "rate_limit_rules"


def placed_under(rules: Sequence[RateRule], backlog: int) -> str:
    """The value of PLACED_UNDER for `rules` and `backlog`."""
    return f"{describe_rules(rules)};backlog={backlog}"


_UNIT_NAMES = ((86400, "d"), (3600, "h"), (60, "min"), (1, "s"))


def describe_rules(rules: Sequence[RateRule]) -> str:
    """The rules as the config spells them: `60/min,1000/h`, or `off`."""
    if not rules:
        return "off"
    parts = []
    for rule in rules:
        per = rule.per_seconds
        for seconds, unit in _UNIT_NAMES:
            if per % seconds == 0:
                multiple = int(per // seconds)
                parts.append(f"{rule.count}/{'' if multiple == 1 else multiple}{unit}")
                break
        else:
            parts.append(f"{rule.count}/{per:g}s")
    return ",".join(parts)


def waiting_report(
    found: dict[str, Any], rules: Sequence[RateRule], backlog: int
) -> dict[str, Any]:
    """What `status`, `preview`, `flush` and the dashboard say about the events the rate
    limit holds back: how many, whose, until when, and why, in one shape.

    `found` is the store's count (`upload_queries.waiting`)."""
    count = int(found.get("events", 0))
    next_ms, last_ms = found.get("next_ms"), found.get("last_ms")
    everyone = describe_rules(all_sources_rules(rules))
    report: dict[str, Any] = {
        "events": count,
        # The sources with the most events waiting (at most 20), and how many there are.
        "by_source": dict(found.get("by_source", {})),
        "sources": int(found.get("sources", len(found.get("by_source", {})))),
        "next_eligible": format_timestamp(next_ms) if count and next_ms else None,
        "all_eligible_by": format_timestamp(last_ms) if count and last_ms else None,
        "rule": describe_rules(rules),
        "backlog_cap": backlog,
        # Many sources, each well within its own rule, may wait for these alone: a rule
        # the user never wrote, so it is named wherever the per-source one is.
        "all_sources_rule": everyone,
        "all_sources_backlog_cap": backlog * ALL_SOURCES_FACTOR,
        "why": None,
    }
    if count:
        report["why"] = (
            f"{count} {'event waits' if count == 1 else 'events wait'} for the upload rate "
            f"limit ({describe_rules(rules)} per source, {everyone} for all sources "
            f"together); later flushes send them, oldest first, by {report['all_eligible_by']}"
        )
    return report


def all_sources_rules(rules: Sequence[RateRule]) -> tuple[RateRule, ...]:
    """What all sources together are held to: each rule times ALL_SOURCES_FACTOR."""
    return tuple(RateRule(rule.count * ALL_SOURCES_FACTOR, rule.per_seconds) for rule in rules)
