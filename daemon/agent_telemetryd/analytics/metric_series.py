"""OTLP metric points, summed per series and time bucket in SQL, as one chart series per
metric and agent. No I/O.

What a bucket's value is depends on the metric's type:

- a **sum** counts something: the bucket holds how much was added in it. Delta points are
  added up. A cumulative series is a running total per start time (a process counting
  from zero): each start time's points contribute how much they rose from one to the
  next, from its last point before the bucket (or before the range) on, all of a value
  that went down (a reset) and all of a start time's first value. So processes counting
  one after another, or at once, add up. An up-down counter (not monotonic) going down
  is a change, not a reset: its buckets hold net changes;
- a **gauge** is a level: the bucket holds the mean of its points;
- a **histogram** (explicit, exponential) or **summary**: the bucket holds the mean of the
  observations made in it (their sum over their count, from deltas or, for cumulative
  ones, from differences as for sums).

A metric's series of several attribute sets (a token counter by model and by input or
output) are combined: amounts are added, gauges and means are taken over all points.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

SUMS = ("sum",)
MEANS_OF_OBSERVATIONS = ("histogram", "exponential_histogram", "summary")


@dataclass
class Chain:
    """A running total from one start time (one process) in a cell: where it began and
    ended there."""

    first_ms: Any
    first_value: Any
    first_count: Any
    last_ms: Any
    last_value: Any
    last_count: Any


@dataclass
class Cell:
    """One series' points in one bucket (`agent_metric_hours` or the live tail; see
    `store.metric_cells`): its chains by start time, and how much they grew inside it."""

    points: int
    total: float
    total_count: float
    last_ms: int
    last_value: Any
    last_count: Any
    last_start: Any
    falls: int  # 1: a sum that is not monotonic (an up-down counter), its fall no reset
    chains: Any  # the JSON list as read; a {start: Chain} after __post_init__
    grown: float
    grown_count: float

    def __post_init__(self) -> None:
        if isinstance(self.chains, dict):
            return
        listed = json.loads(self.chains) if self.chains else []
        self.chains = {start: Chain(*ends) for start, *ends in listed}
        if not self.chains:  # nothing listed: the last point is all there is to go by
            ends = (self.last_ms, self.last_value, self.last_count)
            self.chains = {self.last_start: Chain(*ends, *ends)}

    @property
    def first_ms(self) -> Any:
        return min(chain.first_ms for chain in self.chains.values())

    def merge(self, other: Cell) -> None:
        """`other`'s points into this cell (hours of a day, the folded hour and its live
        tail). A chain in both whose points in one all come before its points in the other
        is one run, and the step between the two counts too."""
        self.points += other.points
        self.falls = max(self.falls, other.falls)
        self.total += other.total
        self.total_count += other.total_count
        self.grown += other.grown
        self.grown_count += other.grown_count
        for start, theirs in other.chains.items():
            ours = self.chains.get(start)
            if ours is None:
                self.chains[start] = theirs
                continue
            if theirs.first_ms >= ours.last_ms:
                earlier, later = ours, theirs
            elif theirs.last_ms <= ours.first_ms:
                earlier, later = theirs, ours
            else:  # interleaved (points out of order): each side's own growth only
                earlier = later = None
            if earlier is not None and later is not None:
                falls = bool(self.falls)
                self.grown += _step(earlier.last_value, later.first_value, falls)
                self.grown_count += _step(earlier.last_count, later.first_count, falls)
            if theirs.first_ms < ours.first_ms:
                ours.first_ms, ours.first_value = theirs.first_ms, theirs.first_value
                ours.first_count = theirs.first_count
            if theirs.last_ms >= ours.last_ms:
                ours.last_ms, ours.last_value = theirs.last_ms, theirs.last_value
                ours.last_count = theirs.last_count
        if other.last_ms >= self.last_ms:
            self.last_ms, self.last_value = other.last_ms, other.last_value
            self.last_count, self.last_start = other.last_count, other.last_start


@dataclass
class _Series:
    name: str
    agent: str
    unit: str | None
    type: str | None
    temporality: str | None
    # {attributes: {t: Cell}}
    by_attributes: dict[str, dict[int, Cell]] = field(default_factory=dict)


def series(
    cells: list[tuple[Any, ...]],
    previous: dict[tuple[str, str, str], Any],
    start_ms: Any,
) -> list[dict[str, Any]]:
    """The chart series from SQL cells (name, agent, attributes, unit, type, temporality,
    t, then `Cell`'s fields); `previous` holds each cumulative series' last point before
    the range, per start time (`store.analytics_events.previous_points`); `start_ms(t)`
    is where a bucket starts."""
    grouped: dict[tuple[str, str], _Series] = {}
    parts: dict[tuple[str, str, str, int], list[Cell]] = defaultdict(list)
    for name, agent, attributes, unit, kind, temporality, t, *numbers in cells:
        grouped.setdefault((name, agent), _Series(name, agent, unit, kind, temporality))
        parts[(name, agent, attributes, t)].append(Cell(*numbers))
    # The cells of one bucket (a day's hours, an hour and its live tail) merged in time
    # order, so each step from one to the next is counted once.
    for (name, agent, attributes, t), found in parts.items():
        found.sort(key=lambda cell: (cell.first_ms, cell.last_ms))
        merged = found[0]
        for cell in found[1:]:
            merged.merge(cell)
        grouped[(name, agent)].by_attributes.setdefault(attributes, {})[t] = merged
    out = []
    for (name, agent), entry in sorted(grouped.items()):
        values = _values(entry, previous)
        out.append(
            {
                "name": name,
                "unit": entry.unit,
                "agent": agent,
                "type": entry.type,
                "temporality": entry.temporality,
                "points": [[start_ms(t), value] for t, value in sorted(values.items())],
            }
        )
    return out


def _values(entry: _Series, previous: dict[tuple[str, str, str], Any]) -> dict[int, float]:
    amounts: dict[int, float] = defaultdict(float)
    sums: dict[int, float] = defaultdict(float)
    counts: dict[int, float] = defaultdict(float)
    cumulative = entry.temporality == "cumulative"
    for attributes, by_t in entry.by_attributes.items():
        # {start: (last_ms, value, count)}: where each chain ended before the bucket.
        ended = dict(previous.get((entry.name, entry.agent, attributes)) or {})
        for t in sorted(by_t):
            cell = by_t[t]
            added = added_count = 0.0
            if cumulative:
                # What each chain's first point added to where that chain ended before
                # (all of it for a chain new here), and what the chains grew inside.
                added, added_count = cell.grown, cell.grown_count
                for start, chain in cell.chains.items():
                    _, value, count = ended.get(start, (None, None, None))
                    added += _step(value, chain.first_value, bool(cell.falls))
                    added_count += _step(count, chain.first_count, bool(cell.falls))
                    ended[start] = (chain.last_ms, chain.last_value, chain.last_count)
            if entry.type in SUMS:
                amounts[t] += added if cumulative else cell.total
            elif entry.type in MEANS_OF_OBSERVATIONS:
                sums[t] += added if cumulative else cell.total
                counts[t] += added_count if cumulative else cell.total_count
            else:  # gauges, and anything else: the mean of the points
                sums[t] += cell.total
                counts[t] += cell.points
    if entry.type in SUMS:
        return {t: _round(value) for t, value in amounts.items()}
    return {t: _round(sums[t] / counts[t]) for t in sums if counts[t]}


def _step(previous: Any, value: Any, falls: bool = False) -> float:
    """How much a running total grew from `previous` (its point before, of the same start
    time) to `value`: all of it with nothing before, or after a reset (it went down), but
    for a total that `falls` (an up-down counter), whose going down is a change."""
    if not isinstance(value, int | float):
        return 0.0
    if not isinstance(previous, int | float) or (value < previous and not falls):
        return float(value)
    return float(value - previous)


def _round(value: float) -> float:
    return round(value, 9)
