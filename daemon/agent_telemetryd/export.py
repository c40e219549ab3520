"""Export formats: JSON (one array), NDJSON, CSV with properties as JSON text."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator
from typing import Any

import orjson

from agent_telemetryd.store.queries import EXPORT_FIELDS

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
        csv.writer(out, lineterminator="\n").writerow(["" if v is None else v for v in values])
        return out.getvalue().encode()


def render_all(rows: Iterable[dict[str, Any]], fmt: str) -> Iterator[bytes]:
    renderer = Renderer(fmt)
    yield renderer.begin()
    for row in rows:
        yield renderer.row(row)
    yield renderer.end()
