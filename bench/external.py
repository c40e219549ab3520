"""Benches other parts of the project keep in bench/ (one module each, `run(quick)`),
turned into rows of the one table. Their own printing is kept out of the table.

Shapes understood: a list of `{"path", "events", "seconds"}` whose anchor row says
"anchor" (bench/server_ingest.py); a dict with `"rows"` of Row-shaped dicts; otherwise a
dict whose numeric values become one row each.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import io
from collections.abc import Mapping
from dataclasses import fields
from typing import Any

from bench.report import Row

MODULES = ("upload_flush", "dashboard_queries", "server_ingest", "server_dashboard")
_ROW_FIELDS = {f.name for f in fields(Row)}


def available() -> list[str]:
    return [name for name in MODULES if importlib.util.find_spec(f"bench.{name}") is not None]


def run(name: str, quick: bool) -> list[Row]:
    module = importlib.import_module(f"bench.{name}")
    with contextlib.redirect_stdout(io.StringIO()):
        result = module.run(quick)
    return to_rows(name, result)


def to_rows(section: str, result: Any) -> list[Row]:
    if isinstance(result, Mapping) and isinstance(result.get("rows"), list):
        return [_row(section, item) for item in result["rows"]]
    if isinstance(result, list) and all(isinstance(r, Mapping) for r in result):
        if all({"events", "seconds"} <= r.keys() for r in result):
            return _rates(section, result)
        return [_row(section, item) for item in result]
    if isinstance(result, Mapping):
        rows = [Row(section, key, value, _unit(key)) for key, value in _flatten(result)]
        _anchor(section, rows)
        return rows
    return [Row(section, "result", None, "", note=repr(result)[:200])]


def _flatten(node: Mapping[str, Any], prefix: str = "") -> list[tuple[str, float]]:
    out: list[tuple[str, float]] = []
    for key, value in node.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.extend(_flatten(value, f"{name} "))
        elif isinstance(value, int | float) and not isinstance(value, bool):
            out.append((name, float(value)))
    return out


def _unit(key: str) -> str:
    for suffix, unit in (("_ms", "ms"), ("_s", "s"), ("_mib", "MiB"), ("_kib", "KiB"),
                         ("per_second", "events/s"), ("seconds", "s")):  # fmt: skip
        if key.endswith(suffix):
            return unit
    return ""


def _anchor(section: str, rows: list[Row]) -> None:
    """Pair the figures of known modules with the anchor they measured themselves."""
    by_name = {row.name: row for row in rows}
    if "count_star_ms" in by_name:  # dashboard_queries: a full scan is the anchor
        anchor = by_name["count_star_ms"].value
        for row in rows:
            if row.unit == "ms" and row.name not in ("count_star_ms",) and anchor:
                row.anchor, row.anchor_value = "SELECT count(*)", anchor
                row.ratio = (row.value or 0) / anchor
    if "peak_rss_mib" in by_name and "rss_before_mib" in by_name:  # upload_flush
        peak, idle = by_name["peak_rss_mib"], by_name["rss_before_mib"]
        if peak.value is not None and idle.value is not None:
            peak.anchor, peak.anchor_value = "RSS before flush", idle.value
            peak.ratio = peak.value / idle.value if idle.value else None
            peak.target, peak.met = "< 20 MiB above", peak.value - idle.value < 20

    for row in rows:  # upload_flush: the flush against what a slow backend allows
        if row.name.endswith("ms_events_per_second"):
            bound = by_name.get(row.name.replace("_events_per_second", "_bound_per_second"))
            if bound is not None and bound.value and row.value is not None:
                row.anchor, row.anchor_value = "backend's bound", bound.value
                row.ratio = row.value / bound.value
                row.target, row.met = ">= 0.8 of the backend's bound", row.ratio >= 0.8


def _row(section: str, item: Mapping[str, Any]) -> Row:
    known = {k: v for k, v in item.items() if k in _ROW_FIELDS}
    known.setdefault("section", section)
    known.setdefault("name", str(item.get("path") or item.get("measure") or "?"))
    known.setdefault("value", None)
    known.setdefault("unit", "")
    return Row(**known)


def _rates(section: str, items: list[Mapping[str, Any]]) -> list[Row]:
    anchors = [r for r in items if "anchor" in str(r.get("path", "")).lower()]
    anchor = anchors[-1] if anchors else None
    anchor_rate = anchor["events"] / anchor["seconds"] if anchor else None
    rows = []
    for item in items:
        rate = item["events"] / item["seconds"]
        if item is anchor:
            rows.append(Row(section, str(item["path"]), rate, "events/s"))
            continue
        rows.append(
            Row(
                section,
                str(item.get("path", "?")),
                rate,
                "events/s",
                "anchor" if anchor else "",
                anchor_rate,
                rate / anchor_rate if anchor_rate else None,
            )
        )
    return rows
