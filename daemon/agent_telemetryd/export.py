"""Export formats: JSON (one array), NDJSON, CSV with properties as JSON text.

A CSV export is made to be opened in a spreadsheet, and spreadsheets run a cell that
starts with `=`, `+`, `-` or `@` (or a tab or carriage return before one) as a formula:
an event or agent name is whatever an agent sent, so `=HYPERLINK(...)` or `=cmd|...` in
one would run on the user's machine when they open their own data. Such a text cell gets
a leading `'`, which spreadsheets read as "this is text" and do not show (OWASP's advice
for CSV injection). JSON and NDJSON hold the values unchanged.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator
from typing import Any

import orjson

from agent_telemetryd.store.queries import EXPORT_FIELDS

# What makes a spreadsheet read a cell as a formula, when a text cell starts with it.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")

FORMATS = {"json": "application/json", "ndjson": "application/x-ndjson", "csv": "text/csv"}


class Renderer:
    """Turns rows into bytes one at a time, so an export of any size streams."""

    def __init__(self, fmt: str) -> None:
        if fmt not in FORMATS:
            raise ValueError(f"unknown export format {fmt!r}; use one of {', '.join(FORMATS)}")
        self.fmt = fmt
        self._count = 0

    def begin(self) -> bytes:
        if self.fmt == "json":
            return b"["
        if self.fmt == "csv":
            return self._csv_line(EXPORT_FIELDS)
        return b""

    def row(self, row: dict[str, Any]) -> bytes:
        self._count += 1
        if self.fmt == "ndjson":
            return orjson.dumps(row) + b"\n"
        if self.fmt == "json":
            return (b",\n" if self._count > 1 else b"\n") + orjson.dumps(row)
        values = [row[name] for name in EXPORT_FIELDS]
        values[EXPORT_FIELDS.index("properties")] = orjson.dumps(row["properties"]).decode()
        return self._csv_line(values)

    def end(self) -> bytes:
        return b"\n]\n" if self.fmt == "json" else b""

    @staticmethod
    def _csv_line(values: Iterable[Any]) -> bytes:
        out = io.StringIO()
        csv.writer(out, lineterminator="\n").writerow([_cell(v) for v in values])
        return out.getvalue().encode()


def _cell(value: Any) -> Any:
    """A CSV cell a spreadsheet shows and never runs: text that would start a formula
    gets a leading `'`; None is an empty cell."""
    if value is None:
        return ""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def render_all(rows: Iterable[dict[str, Any]], fmt: str) -> Iterator[bytes]:
    renderer = Renderer(fmt)
    yield renderer.begin()
    for row in rows:
        yield renderer.row(row)
    yield renderer.end()
