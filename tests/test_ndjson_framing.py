"""ingest.sock framing: however the bytes are split into reads, the same lines come out."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from agent_telemetryd.events import Limits
from agent_telemetryd.ingest import Ingestor
from agent_telemetryd.receivers.ndjson_socket import NdjsonProtocol

MAX_LINE = 256


class RecordingWriter:
    """Keeps what would be committed, so framing can be checked without SQLite."""

    def __init__(self) -> None:
        self.rows: list[tuple[Any, ...]] = []
        self.counters: dict[str, int] = {}

    def submit(self, rows: list[tuple[Any, ...]], counters: dict[str, int], **_: Any) -> None:
        self.rows.extend(rows)
        for name, value in counters.items():
            self.counters[name] = self.counters.get(name, 0) + value


def feed(chunks: list[bytes]) -> RecordingWriter:
    writer = RecordingWriter()
    ingestor = Ingestor(
        limits=Limits(),
        mode=lambda: "local",
        writer=lambda: writer,  # type: ignore[arg-type, return-value]
        anonymous_id=lambda: "id",
    )
    protocol = NdjsonProtocol(ingestor, MAX_LINE)
    for chunk in chunks:
        protocol.data_received(chunk)
    protocol.eof_received()
    return writer


lines = st.one_of(
    st.integers(0, 10**6).map(lambda n: json.dumps({"event": "ok", "properties": {"n": n}})),
    st.binary(max_size=40).map(lambda b: b.replace(b"\n", b" ").decode("latin-1")),
    st.just("x" * (MAX_LINE + 50)),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(lines, max_size=30), st.lists(st.integers(1, 80), min_size=1, max_size=40))
def test_split_points_do_not_change_what_is_kept(items: list[str], cuts: list[int]) -> None:
    payload = "".join(item + "\n" for item in items).encode("latin-1")
    whole = feed([payload])
    chunks, position, index = [], 0, 0
    while position < len(payload):
        size = cuts[index % len(cuts)]
        chunks.append(payload[position : position + size])
        position += size
        index += 1
    split = feed(chunks)
    assert [r[4] for r in split.rows] == [r[4] for r in whole.rows]
    assert split.counters == whole.counters
    expected = [json.loads(i)["properties"] for i in items if i.startswith('{"event": "ok"')]
    assert [json.loads(r[4]) for r in whole.rows] == expected
    blank = sum(1 for i in items if not i.encode("latin-1").strip())
    assert whole.counters.get("received", 0) == len(items) - blank


def test_oversize_line_is_skipped_to_the_next_newline_without_buffering_it() -> None:
    writer = feed([b'{"event": "a"}\n' + b"y" * 10_000, b"y" * 10_000, b'\n{"event": "b"}\n'])
    assert [r[1] for r in writer.rows] == ["a", "b"]
    assert writer.counters["rejected"] == 1


def test_last_line_without_newline_is_taken_at_eof() -> None:
    writer = feed([b'{"event": "a"}\n{"event": "tail"}'])
    assert [r[1] for r in writer.rows] == ["a", "tail"]
