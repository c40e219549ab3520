"""OTLP metric points, summed per series and time bucket in SQL, as one chart series per
metric and agent. No I/O.

What a bucket's value is depends on the metric's type:

- a **sum** counts something: the bucket holds how much was added in it. Delta points are
  added up; a cumulative series (a running total since its start time) contributes how
  much it rose from each point to the next, from its last point in an earlier bucket (or
  before the range) on: a point's value less the one before it, or its whole value when
  it restarted (a new start time, or a value that went down). Each restart inside a
  bucket counts, so short-lived processes counting one after another add up;
- a **gauge** is a level: the bucket holds the mean of its points;
- a **histogram** (explicit, exponential) or **summary**: the bucket holds the mean of the
  observations made in it (their sum over their count, from deltas or, for cumulative
  ones, from differences as for sums).

A metric's series of several attribute sets (a token counter by model and by input or
output) are combined: amounts are added, gauges and means are taken over all points.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

SUMS = ("sum",)
MEANS_OF_OBSERVATIONS = ("histogram", "exponential_histogram", "summary")


@dataclass
class Cell:
    """One series' points in one bucket (`agent_metric_hours` or the live tail; see
    `store.metric_cells`): `grown` is how much a running total rose inside it."""

    points: int
    total: float
    total_count: float
    last_ms: int
    last_value: Any
    last_count: Any
    last_start: Any
    first_ms: Any
    first_value: Any
    first_count: Any
    first_start: Any
    grown: float
    grown_count: float

    def __post_init__(self) -> None:
        if self.first_ms is None:  # a cell of one point's worth, kept before the first point
            self.first_ms, self.first_value = self.last_ms, self.last_value
            self.first_count, self.first_start = self.last_count, self.last_start

    def merge(self, other: Cell) -> None:
        """`other`'s points into this cell. One cell's points all before the other's (hours
        of a day, the folded hour and its live tail): they are one run, and the step from
        the earlier's last point to the later's first counts too."""
        self.points += other.points
        self.total += other.total
        self.total_count += other.total_count
        self.grown += other.grown
        self.grown_count += other.grown_count
        if other.first_ms >= self.last_ms:
            self.grown += _added(other.first_value, other.first_start, self._last())
            self.grown_count += _added(other.first_count, other.first_start, self._last(True))
        elif other.last_ms <= self.first_ms:
            self.grown += _added(self.first_value, self.first_start, other._last())
            self.grown_count += _added(self.first_count, self.first_start, other._last(True))
        if other.first_ms < self.first_ms:
            self.first_ms, self.first_value = other.first_ms, other.first_value
            self.first_count, self.first_start = other.first_count, other.first_start
        if other.last_ms >= self.last_ms:
            self.last_ms, self.last_value = other.last_ms, other.last_value
            self.last_count, self.last_start = other.last_count, other.last_start

    def _last(self, count: bool = False) -> tuple[Any, Any, Any]:
        return (self.last_count if count else self.last_value, None, self.last_start)


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
    previous: dict[tuple[str, str, str], tuple[Any, Any, Any]],
    start_ms: Any,
) -> list[dict[str, Any]]:
    """The chart series from SQL cells (name, agent, attributes, unit, type, temporality,
    t, then `Cell`'s fields); `previous` holds each cumulative series' last point before
    the range; `start_ms(t)` is where a bucket starts."""
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
        before = previous.get((entry.name, entry.agent, attributes)) if cumulative else None
        for t in sorted(by_t):
            cell = by_t[t]
            # A cumulative bucket: what its first point added to the last one before it,
            # and what the running total grew by inside it.
            if entry.type in SUMS:
                amounts[t] += (
                    _added(cell.first_value, cell.first_start, before) + cell.grown
                    if cumulative
                    else cell.total
                )
            elif entry.type in MEANS_OF_OBSERVATIONS:
                if cumulative:
                    sums[t] += _added(cell.first_value, cell.first_start, before) + cell.grown
                    counts[t] += (
                        _added(cell.first_count, cell.first_start, _count_of(before))
                        + cell.grown_count
                    )
                else:
                    sums[t] += cell.total
                    counts[t] += cell.total_count
            else:  # gauges, and anything else: the mean of the points
                sums[t] += cell.total
                counts[t] += cell.points
            before = (cell.last_value, cell.last_count, cell.last_start)
    if entry.type in SUMS:
        return {t: _round(value) for t, value in amounts.items()}
    return {t: _round(sums[t] / counts[t]) for t in sums if counts[t]}


def _count_of(before: tuple[Any, Any, Any] | None) -> tuple[Any, Any, Any] | None:
    return None if before is None else (before[1], None, before[2])


def _added(value: Any, start: Any, before: tuple[Any, Any, Any] | None) -> float:
    """How much a running total grew since `before` (its previous last point)."""
    if not isinstance(value, int | float):
        return 0.0
    if before is None or not isinstance(before[0], int | float):
        return float(value)
    previous, _, previous_start = before
    if start != previous_start or value < previous:
        return float(value)  # restarted: everything it counts is new
    return float(value - previous)


def _round(value: float) -> float:
    return round(value, 9)
