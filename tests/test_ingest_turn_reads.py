"""A turn's reads of several connections, handed over together, are stored as the same
reads given one by one.

ingest.sock hands the ingestor every read of a turn at once (`Ingestor.accept_turn`): one
decoding of all their lines, one set of rows each with its own connection's pid, one write.
When they cannot go together (a line of a new shape or second, a bad line, a drop-count
line, a source that names its agent or waits for an upload date, an upload gate) each read
goes as it did. Here one ingestor takes each turn through `accept_turn` and another the
same reads one `accept_lines` after another, after the same turns before them: the same
rows (pid and order included), refusals, counters and outcomes.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent_telemetryd.ingest import Ingestor, Source
from agent_telemetryd.outcomes import Outcome
from tests.fakes.ingest_parts import RecordingWriter
from tests.test_ingest_reads import (
    _MODES,
    _NAME_SETS,
    _NUMBER_LINES,
    _ODD_COLUMNS,
    _ODD_LINES,
    _SHIM_LINES,
    _UUID,
    _ingestor,
    _line,
    _one_shape,
    _sized_line,
)

Read = tuple[list[bytes], Source]

# ingest.sock's connections: their own pid each, or none known (a peer the kernel could
# not name); and sources a turn cannot take with the others.
_CONNECTIONS = st.sampled_from(
    [Source("unix", pid=101), Source("unix", pid=102), Source("unix", pid=103), Source("unix")]
)
_OTHER_SOURCES = st.sampled_from(
    [
        Source("unix", agent="named-by-the-connection", pid=104),
        Source("unix", pid=105, upload_from_ms=1_796_212_800_500),
        Source("spool", pid=106),
    ]
)
_READ_LINES = (
    st.lists(_SHIM_LINES, min_size=1, max_size=10)
    | st.sampled_from(_NAME_SETS).flatmap(_one_shape)
    | st.lists(_SHIM_LINES | _NUMBER_LINES, min_size=1, max_size=10)
    | st.lists(_SHIM_LINES | st.integers(295, 305).map(_sized_line), min_size=1, max_size=6)
    | st.lists(_SHIM_LINES | _ODD_COLUMNS, min_size=1, max_size=10)
    | st.lists(_SHIM_LINES | _ODD_COLUMNS | _ODD_LINES, min_size=1, max_size=10)
)
_TURNS = st.lists(
    st.lists(st.tuples(_READ_LINES, _CONNECTIONS), min_size=1, max_size=5)
    | st.lists(st.tuples(_READ_LINES, _CONNECTIONS | _OTHER_SOURCES), min_size=2, max_size=5),
    min_size=1,
    max_size=3,
)


class CountingWriter(RecordingWriter):
    """Also counts the write requests it is handed."""

    def __init__(self) -> None:
        super().__init__()
        self.requests = 0

    def submit(self, rows: list[Any], counters: dict[str, int], **kwargs: Any) -> None:
        self.requests += 1
        super().submit(rows, counters, **kwargs)


def _counting_ingestor(mode: str, gated: bool) -> tuple[Ingestor, CountingWriter]:
    ingestor, _ = _ingestor(mode, gated, plain=False)
    writer = CountingWriter()
    ingestor._writer = lambda: writer  # type: ignore[assignment, return-value]
    return ingestor, writer


def _outcomes(outcomes: list[Outcome]) -> list[Any]:
    return [
        (o.kept, [(r.index, r.reason) for r in o.rejected], o.row_documents, o.pending)
        for o in outcomes
    ]


def _stored(ingestor: Ingestor, writer: RecordingWriter, reads: list[Read], turn: bool) -> Any:
    """A turn's rows (an assigned uuid blanked: it is new each time), outcomes and the
    counters it added, stored and in memory (mode off)."""
    writer.rows.clear()
    writer.counters.clear()
    if turn:
        outcomes = ingestor.accept_turn(reads)
    else:
        outcomes = [ingestor.accept_lines(lines, source) for lines, source in reads]
    sent = b"".join(line for lines, _ in reads for line in lines)
    rows = [row if row.uuid.encode() in sent else row._replace(uuid="") for row in writer.rows]
    return rows, _outcomes(outcomes), dict(writer.counters), dict(ingestor.memory.values)


@pytest.mark.parametrize(("mode", "gated"), _MODES)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(turns=_TURNS)
def test_a_turn_is_stored_as_its_reads_one_by_one(
    mode: str, gated: bool, turns: list[list[Read]]
) -> None:
    merged, merged_writer = _counting_ingestor(mode, gated)
    one_by_one, one_by_one_writer = _counting_ingestor(mode, gated)
    # Each turn twice: the second time its shapes, texts and seconds are known.
    for reads in [turn for turn in turns for _ in range(2)]:
        got = _stored(merged, merged_writer, reads, turn=True)
        assert got == _stored(one_by_one, one_by_one_writer, reads, turn=False)
    # Never more write requests than read by read.
    assert merged_writer.requests <= one_by_one_writer.requests


def _shim_line(connection: int, n: int) -> bytes:
    return _line(
        {
            "event": "tool.call",
            "properties": {"model": "model-1", "tokens_in": n, "tool": "search", "c": connection},
            "timestamp": f"2026-12-02T12:00:00.{n:03d}Z",
            "uuid": f"{_UUID[:-2]}{connection}{n:02d}",
            "agent": f"agent-{connection}",
        }
    )


def _connections_turn(*, reads_per_connection: int = 1) -> list[Read]:
    """Three connections' reads of known lines, read by read as a turn reads them: each
    connection's `reads_per_connection` reads of 3 lines after one another."""
    return [
        ([_shim_line(c, 3 * r + i) for i in range(3)], Source("unix", pid=100 + c))
        for c in range(3)
        for r in range(reads_per_connection)
    ]


@pytest.mark.parametrize(("mode", "gated"), [("local", False), ("upload", False), ("off", False)])
def test_a_turn_of_known_lines_is_one_write_with_each_rows_own_pid(mode: str, gated: bool) -> None:
    ingestor, writer = _counting_ingestor(mode, gated)
    ingestor.accept_turn(_connections_turn())  # first seen: its shapes and second learnt
    writer.requests = 0
    writer.rows.clear()
    writer.counters.clear()
    outcomes = ingestor.accept_turn(_connections_turn(reads_per_connection=2))
    if mode == "off":
        assert (writer.requests, ingestor.memory.values["dropped.mode_off"]) == (0, 27)
        return
    assert writer.requests == 1
    got = [(row.pid, json.loads(row.properties)["c"], row.uuid[-3:]) for row in writer.rows]
    assert got == [(100 + c, c, f"{c}{n:02d}") for c in range(3) for n in range(6)], (
        "each row of its own connection, in the order read"
    )
    assert [o.row_documents for o in outcomes] == [[0, 1, 2]] * 6
    assert writer.counters == {"received": 18, "rejected": 0}


def test_an_upload_gate_takes_a_turn_read_by_read() -> None:
    """Each row's upload state then depends on its source's backlog: its own write."""
    ingestor, writer = _counting_ingestor("upload", True)
    ingestor.accept_turn(_connections_turn())
    writer.requests = 0
    ingestor.accept_turn(_connections_turn())
    assert writer.requests == 3


def test_a_bad_line_in_one_read_takes_the_turn_read_by_read() -> None:
    ingestor, writer = _counting_ingestor("local", False)
    ingestor.accept_turn(_connections_turn())
    writer.requests = 0
    writer.rows.clear()
    writer.counters.clear()
    reads = _connections_turn()
    reads[1][0].insert(1, b"{not json")
    ingestor.accept_turn(reads)
    assert writer.requests == 3
    assert writer.counters == {"received": 10, "rejected": 1}
    assert [row.pid for row in writer.rows] == [100] * 3 + [101] * 3 + [102] * 3
