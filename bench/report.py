"""One row of the bench table, the table itself, and medians/percentiles.

Every headline figure is paired with an anchor measured in the same run, because the
machines these run on are shared and noisy: the ratio means something, the absolute
number only on the day it was taken.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(slots=True)
class Row:
    section: str
    name: str
    value: float | None
    unit: str
    anchor: str = ""
    anchor_value: float | None = None
    ratio: float | None = None  # value / anchor_value, or whichever way `target` reads
    target: str = ""
    met: bool | None = None
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def median(values: Iterable[float]) -> float:
    return statistics.median(list(values))


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of an already sorted sequence (q in 0..100)."""
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(q / 100 * len(sorted_values)) - 1))
    return sorted_values[index]


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    if value != value:  # NaN
        return "nan"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.3g}"


def _met(met: bool | None) -> str:
    return {True: "yes", False: "NO", None: ""}[met]


def format_table(rows: Sequence[Row]) -> str:
    header = (
        "section",
        "measure",
        "value",
        "unit",
        "anchor",
        "anchor value",
        "ratio",
        "target",
        "met",
    )
    cells = [
        (
            r.section,
            r.name,
            _fmt(r.value),
            r.unit,
            r.anchor,
            _fmt(r.anchor_value),
            _fmt(r.ratio),
            r.target,
            _met(r.met),
        )
        for r in rows
    ]
    widths = [
        max(len(h), *(len(c[i]) for c in cells)) if cells else len(h) for i, h in enumerate(header)
    ]
    numeric = {2, 5, 6}

    def line(values: Sequence[str]) -> str:
        return (
            "| "
            + " | ".join(
                v.rjust(w) if i in numeric else v.ljust(w)
                for i, (v, w) in enumerate(zip(values, widths, strict=True))
            )
            + " |"
        )

    out = [line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out.extend(line(c) for c in cells)
    notes = [f"- {r.section} / {r.name}: {r.note}" for r in rows if r.note]
    if notes:
        out.append("")
        out.extend(notes)
    return "\n".join(out)
