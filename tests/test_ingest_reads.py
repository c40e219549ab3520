"""A read of NDJSON lines is stored as its lines one by one are, whatever mixes in it.

ingest.sock takes a read whose lines are all of shapes seen before all at once
(`known_reads.py`): decoded in one pass, checked a column at a time and renamed on the
JSON of all lines together. Here a daemon's ingestor with that path and one with no
shortcut at all (its transforms each behind a function of its own, so it validates and
transforms every line as an `Event`) take the same reads, after the same reads before
them, and must store the same rows, refuse the same lines with the same reasons, and
count the same. The reads mix what the shims send with what could trip a read-wide check:
uuids and timestamps a column check could take for canonical ones, texts and names that
hold what the renaming of the JSON looks for, lines over the size limit, integers beyond
64 bits, spans, drop-count lines, lines that name no agent, bad JSON.
"""

from __future__ import annotations

import json
from typing import Any
from unittest.mock import patch

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent_telemetryd import read_columns
from agent_telemetryd.events import Limits
from agent_telemetryd.ingest import Ingestor, Source
from tests.fakes.ingest_parts import RecordingWriter, daemon_transforms

_UUID = "0193a5c1-e000-7000-8000-00000000000"
_GOOD_UUIDS = st.integers(0, 9).map(lambda i: f"{_UUID}{i}")
_ODD_UUIDS = st.sampled_from(
    [
        "0193A5C1-E000-7000-8000-000000000001",  # upper case: normalised, not refused
        "0193a5c1e000700080000000000000001",  # no dashes, 33 digits: not a UUID
        "0193a5c1-e000-7000-8000-00000000001\n",
        "0193a5c1-e000-7000-8000-0000000000g1",
        "0193a5c1-e0007-000-8000-000000000001",  # dashes out of place
        "0193a5c1-e000-7000-8000-00000000000\u0661",  # a digit, but not an ASCII one
        "{0193a5c1-e000-7000-8000-000000000001}",
    ]
)
_GOOD_STAMPS = st.sampled_from(
    ["2026-12-02T12:00:00.123Z", "2026-12-02T12:00:00.999Z", "2026-12-02T12:00:01.000Z"]
)
_ODD_STAMPS = st.sampled_from(
    [
        "2026-12-02T12:00:00.12Z",
        "2026-12-02T12:00:00+01:00",
        "2026-12-02T12:00:00.1a3Z",
        "2026-12-02T12:00:00.\u0661\u0662\u0663Z",  # digits, but not ASCII ones
        "2026-12-02T12:00:00.123z",
        "2026-12-02 12:00:00.123Z",
        "2026-12-02T12:00:00.123Z\n",
        "X2026-12-02T12:00:00.12Z",
        "2026-12-02T12:00:00.0.0Z",
    ]
)
# Names and texts the read path takes, among them what its renaming of the JSON looks
# for (`"model":`, `},{`, `],[`), and what it leaves to the lines one by one (scrubbed, masked).
_KEYS = st.sampled_from(
    ["model", "tokens_in", "input_tokens", "tool", "gen_ai.request.model", "status", "sent_ns",
     "tool_name", 'a"model', "a\\", "},{", "],[", "é", '"model":', "x\u0001"]
)  # fmt: skip
_ODD_KEYS = st.sampled_from(["password", "prompt", "alice@example.com", "$ai_model"])
_TEXTS = st.sampled_from(
    ["ok", "search", "model-1", "", '"model":', '},{"model":', '}],[{"model":', "}\n{", "a\\",
     "é ü 日本", "1520", "0.25", "y" * 60]
)  # fmt: skip
_ODD_TEXTS = st.sampled_from(["alice@example.com", "sk-ant-abcdefghijklmnopqrstuvwx", "y" * 70])
_VALUES = (
    _TEXTS
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.booleans()
    | st.none()
)
_NAME_SETS = [("model", "tokens_in", "tool"), ("status", 'a"model', "},{"), ("sent_ns",)]
_ODD_VALUES = _ODD_TEXTS | st.integers(2**64, 2**70) | st.integers(-(2**70), -(2**63) - 1)


def _line(document: dict[str, Any]) -> bytes:
    try:
        return orjson.dumps(document)
    except TypeError:  # an integer beyond 64 bits, as other encoders write them
        return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode()


def _shim_lines(
    uuids: st.SearchStrategy[str], stamps: st.SearchStrategy[str], keys: Any, values: Any
) -> Any:
    return st.fixed_dictionaries(
        {
            "event": st.sampled_from(["tool.call", "llm.call", "codex.tool_result"]),
            # A few sets of names, as an agent sends (lines of one shape with values of
            # other kinds), or any names.
            "properties": st.sampled_from(_NAME_SETS).flatmap(
                lambda names: st.fixed_dictionaries(dict.fromkeys(names, values))
            )
            | st.dictionaries(keys, values, max_size=5),
            "timestamp": stamps,
            "uuid": uuids,
        },
        optional={"agent": st.sampled_from(["steady-1", "steady-2", "bob@example.com"])},
    ).map(_line)


def _one_shape(names: tuple[str, ...]) -> Any:
    """Lines of one event, agent and set of names, with values of any kind: among them
    the same names with texts where the others have numbers."""
    return st.lists(
        st.fixed_dictionaries(
            {
                "event": st.just("tool.call"),
                "properties": st.fixed_dictionaries(dict.fromkeys(names, _VALUES)),
                "timestamp": _GOOD_STAMPS,
                "uuid": _GOOD_UUIDS,
            }
        ).map(_line),
        min_size=2,
        max_size=8,
    )


# A shim's line: what the read path takes once it knows the line's shape, second and texts.
_SHIM_LINES = _shim_lines(_GOOD_UUIDS, _GOOD_STAMPS, _KEYS, _VALUES)
# One whose uuid or timestamp only looks like the usual ones, or with a name or a value
# the read path does not take.
_ODD_COLUMNS = _shim_lines(
    _GOOD_UUIDS | _ODD_UUIDS, _GOOD_STAMPS | _ODD_STAMPS, _KEYS | _ODD_KEYS, _VALUES | _ODD_VALUES
)
_ODD_LINES = st.sampled_from(
    [
        b"{not json",
        b"[1,2]",
        b'{"event": 5}',
        b'{"zz": 1}',
        b'{"client_drops": {"backlog_full": 3}, "agent": "steady-1"}',
        b'{"client_drops": {"Bad Reason": 2}}',
        b'{"event":"tool.call","properties":{"model":{"nested":1}},'
        b'"timestamp":"2026-12-02T12:00:00.123Z","uuid":"0193a5c1-e000-7000-8000-000000000001"}',
        b'{"event":"tool.call","trace_id":"0af7651916cd43dd8448eb211c80319c",'
        b'"span_id":"b7ad6b7169203331","timestamp":"2026-12-02T12:00:00.123Z"}',
        b'{"event":"tool.call","properties":null,"timestamp":"2026-12-02T12:00:00.123Z"}',
        b'{"event":"tool.call","timestamp":"2026-12-02T12:00:00.123Z"}',
        b'{"event":"tool.call","properties":{"model":"m"}}',
        b'{"event":"tool.call","properties":{"status":"' + b"y" * 400 + b'"},'
        b'"timestamp":"2026-12-02T12:00:00.123Z","uuid":"0193a5c1-e000-7000-8000-000000000009"}',
    ]
)


def _sized_line(size: int) -> bytes:
    """A line of a shape the vocabulary renames whose properties are `size` bytes sent."""
    properties = {"model": "m", "a": "y" * 60, "b": "y" * 60, "c": "y" * 60, "e": "y" * 30}
    properties["d"] = "y" * (size - len(orjson.dumps(properties)) - 7)
    return _line(
        {
            "event": "tool.call",
            "properties": properties,
            "timestamp": "2026-12-02T12:00:00.123Z",
            "uuid": "0193a5c1-e000-7000-8000-000000000007",
        }
    )


# Numbers as JSON may spell them, which both decoders and orjson must read alike.
_NUMBER_LINES = st.sampled_from(
    [b"1e5", b"-0", b"-0.0", b"1E400", b"2.5e-3", b"18446744073709551616", b"9007199254740993",
     b"-9223372036854775809", b"0.30000000000000004", b"1e-400", b"1.0"]
).map(
    lambda number: b'{"event":"tool.call","properties":{"model":"ok","tokens_in":%s},'
    b'"timestamp":"2026-12-02T12:00:00.123Z","uuid":"0193a5c1-e000-7000-8000-000000000008"}'
    % number
)  # fmt: skip


class _Gate:
    """An upload rate limit that lets each agent's first few events through."""

    def __init__(self) -> None:
        self.seen: dict[str, int] = {}

    def __call__(self, agent: str, received_ms: int, uuid: str | None) -> int | None:
        self.seen[agent] = self.seen.get(agent, 0) + 1
        return None if self.seen[agent] > 3 else received_ms + self.seen[agent] - 2


def _ingestor(mode: str, gated: bool, *, plain: bool) -> tuple[Ingestor, RecordingWriter]:
    # plain: every line the long way, with no shortcut at all.
    transforms = daemon_transforms(capture_content=False, one_by_one=plain)
    writer = RecordingWriter()
    ingestor = Ingestor(
        limits=Limits(max_keys=64, max_event_bytes=300),
        mode=lambda: mode,
        writer=lambda: writer,  # type: ignore[arg-type, return-value]
        anonymous_id=lambda: "anon",
        transforms=transforms,
        upload_gate=_Gate() if gated else None,
        clock=lambda: 1_764_676_800.0,
    )
    return ingestor, writer


def _take(ingestor: Ingestor, writer: RecordingWriter, lines: list[bytes], source: Source) -> Any:
    """The rows (an assigned uuid blanked: it is new each time), reasons and counters."""
    writer.rows.clear()
    writer.counters.clear()
    outcome = ingestor.accept_lines(lines, source)
    sent = b"".join(lines)
    rows = [row if row.uuid.encode() in sent else row._replace(uuid="") for row in writer.rows]
    reasons = [(r.index, r.reason) for r in outcome.rejected]
    return rows, reasons, dict(writer.counters), outcome.row_documents


_MODES = [("local", False), ("upload", False), ("upload", True), ("off", False)]


@pytest.mark.parametrize("hold_after", [read_columns._HOLD_AFTER, 1])
@pytest.mark.parametrize(("mode", "gated"), _MODES)
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    reads=st.lists(
        st.lists(_SHIM_LINES, min_size=1, max_size=12)
        | st.sampled_from(_NAME_SETS).flatmap(_one_shape)
        | st.lists(_SHIM_LINES | _NUMBER_LINES, min_size=1, max_size=12)
        | st.lists(_SHIM_LINES | st.integers(295, 305).map(_sized_line), min_size=1, max_size=6)
        | st.lists(_SHIM_LINES | _ODD_COLUMNS, min_size=1, max_size=12)
        | st.lists(_SHIM_LINES | _ODD_COLUMNS | _ODD_LINES, min_size=1, max_size=12),
        min_size=1,
        max_size=3,
    ),
    agent=st.sampled_from([None, "named-by-the-connection"]),
)
def test_a_read_is_stored_as_its_lines_one_by_one(
    mode: str, gated: bool, reads: list[list[bytes]], agent: str | None, hold_after: int
) -> None:
    # hold_after 1: the stamps of a second are looked up whole (KnownStamps) from the
    # first read that has them all known, as at a busy daemon.
    fast, fast_writer = _ingestor(mode, gated, plain=False)
    plain, plain_writer = _ingestor(mode, gated, plain=True)
    source = Source("unix", agent=agent, pid=7)
    # Each read twice: the second time its shapes, texts and seconds are known.
    with patch.object(read_columns, "_HOLD_AFTER", hold_after):
        for lines in [read for read in reads for _ in range(2)]:
            got = _take(fast, fast_writer, lines, source)
            assert got == _take(plain, plain_writer, lines, source)


_SECONDS = ["2026-12-02T12:00:00", "2026-12-02T12:00:01", "2026-12-02T11:59:59"]
_STAMPS = (
    st.builds("{}.{:03d}Z".format, st.sampled_from(_SECONDS), st.integers(0, 999))
    | _ODD_STAMPS
    | st.sampled_from(["2026-12-02T12:00:02.000Z", "2026-12-02T12:00:00.000z"])
)


@settings(max_examples=300, deadline=None)
@given(
    steps=st.lists(
        st.tuples(st.lists(_STAMPS, min_size=1, max_size=6), st.sampled_from(["", "clear", "add"])),
        max_size=20,
    ),
    hold_after=st.sampled_from([1, 3, read_columns._HOLD_AFTER]),
)
def test_known_stamps_give_what_the_column_check_gives(
    steps: list[tuple[list[str], str]], hold_after: int
) -> None:
    """Whatever seconds are held, and whatever the validator forgets meanwhile (it clears
    its seconds when full), a read's stamps come out as `known_seconds_ms` gives them."""
    starts = {second: 1_796_212_800_000 + 1000 * i for i, second in enumerate(_SECONDS[:2])}
    stamps = read_columns.KnownStamps(starts)
    with patch.object(read_columns, "_HOLD_AFTER", hold_after):
        for timestamps, change in steps:
            assert stamps.ms(timestamps) == read_columns.known_seconds_ms(timestamps, starts)
            if change == "clear":
                starts.clear()
            elif change == "add":
                starts[_SECONDS[2]] = 1_796_212_799_000
                starts[_SECONDS[0]] = 1_796_212_800_000


def test_a_read_of_known_shim_lines_is_taken_at_once() -> None:
    """The path the property test holds is the one a shim's read takes."""
    lines = [
        _line(
            {
                "event": "tool.call",
                "properties": {"model": "model-1", "tokens_in": i, "tool": "search"},
                "timestamp": f"2026-12-02T12:00:00.{i:03d}Z",
                "uuid": f"{_UUID}{i}",
                "agent": "steady-1",
            }
        )
        for i in range(5)
    ]
    ingestor, _ = _ingestor("local", False, plain=False)
    shapes = ingestor._shapes
    assert shapes is not None
    assert shapes.read_parts(lines) is None  # nothing known yet
    ingestor.accept_lines(lines, Source("unix", pid=7))
    read = shapes.read_parts(lines)
    assert read is not None
    assert read.properties[3] == (
        '{"gen_ai.request.model":"model-1","gen_ai.usage.input_tokens":3,'
        '"gen_ai.tool.name":"search"}'
    )
    assert read.ts_ms == [1_796_212_800_000 + i for i in range(5)]


def test_a_text_where_its_shape_had_a_number_is_read_as_the_vocabulary_reads_it() -> None:
    """Token counts sent as text are numbers once stored, also in a read of known names
    whose plan was made for a number there."""
    lines = [
        _line(
            {
                "event": "tool.call",
                "properties": {"model": "ok", "tokens_in": tokens, "tool": "search"},
                "timestamp": "2026-12-02T12:00:00.123Z",
                "uuid": f"{_UUID}{i}",
            }
        )
        for i, tokens in enumerate([5, "1520"])
    ]
    fast, fast_writer = _ingestor("local", False, plain=False)
    plain, plain_writer = _ingestor("local", False, plain=True)
    source = Source("unix", pid=7)
    for _ in range(2):
        rows, _, _, _ = got = _take(fast, fast_writer, lines, source)
        assert got == _take(plain, plain_writer, lines, source)
        assert '"gen_ai.usage.input_tokens":1520,' in rows[1].properties


@pytest.mark.parametrize(
    ("event", "properties"),
    [
        # Seconds: past 64 bits as milliseconds.
        ("llm.call", {"$ai_latency": 18_446_744_073_709_552}),
        # A coding agent's input tokens leave out the cached ones: their sum, likewise.
        ("claude_code.api_request", {"input_tokens": 2**64 - 1, "cache_read_tokens": 9}),
    ],
)
def test_an_amount_the_vocabulary_derives_past_64_bits_is_stored_as_a_float(
    event: str, properties: dict[str, Any]
) -> None:
    """A huge but valid number the renaming turns into an integer JSON cannot hold costs
    neither its event nor the read it came in: it is stored as a float."""
    lines = [
        _line({"event": "llm.call", "properties": {"model": "m"}, "agent": "a"}),
        _line({"event": event, "properties": properties, "agent": "a"}),
        _line({"event": "llm.call", "properties": {"model": "n"}, "agent": "a"}),
    ]
    ingestor, writer = _ingestor("local", False, plain=False)
    outcome = ingestor.accept_lines(lines, Source("unix", pid=7))
    assert outcome.rejected == []
    assert [json.loads(row.properties) for row in writer.rows][0::2] == [
        {"gen_ai.request.model": "m"},
        {"gen_ai.request.model": "n"},
    ]
    derived = json.loads(writer.rows[1].properties)
    amount = derived.get("duration_ms", derived.get("gen_ai.usage.input_tokens"))
    assert type(amount) is float and amount >= 2**64
    assert writer.counters["received"] == 3


def test_a_transform_that_makes_a_value_json_cannot_hold_costs_only_its_event() -> None:
    """Whatever a transform makes of one event, the read's other events are stored and
    that one is refused with a reason that names the field."""

    def too_big(event: Any) -> Any:
        if event.properties.get("n") == 2:
            event.properties = {"n": 2**70}
        return event

    writer = RecordingWriter()
    ingestor = Ingestor(
        limits=Limits(),
        mode=lambda: "local",
        writer=lambda: writer,  # type: ignore[arg-type, return-value]
        anonymous_id=lambda: "anon",
        transforms=[too_big],
    )
    lines = [_line({"event": "e", "properties": {"n": n}, "agent": "a"}) for n in (1, 2, 3)]
    outcome = ingestor.accept_lines(lines, Source("unix", pid=7))
    assert [(r.index, r.reason) for r in outcome.rejected] == [
        (1, "field 'properties' holds a value that cannot be stored")
    ]
    assert [json.loads(row.properties) for row in writer.rows] == [{"n": 1}, {"n": 3}]
    assert writer.counters["received"] == 3 and writer.counters["rejected"] == 1
