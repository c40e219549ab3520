"""What ingest stores does not depend on what it has seen before.

The ingest path remembers what repeats (names, keys, texts the rules keep, how each shape
of event is renamed) and takes shorter paths for what it recognises. Those paths must
store exactly what a daemon that has never seen anything stores: here a warm ingestor
(every line once before, and the lines around it) and a fresh one per line take the same
NDJSON lines, and every row and every rejection reason must be the same. The lines hold
what the privacy rules act on (secrets, e-mail addresses, home paths, IP addresses,
content names, secret-named keys), at any depth, also written with JSON escapes
(`\\u0040` for `@`), and names the vocabulary renames.

The daemon's own transform chain is also run on an event's parts, planned per shape, and a
line of a shape seen before is taken from its bytes to its row in one step
(`known_shapes.py`): a warm ingestor with those paths must store what the same transforms
store run one by one on `Event`s, and the line decoder (msgspec) must accept only what
the full validation accepts, with the same result.
"""

from __future__ import annotations

import json
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent_telemetryd.events import Event, EventError, Limits, Validator, parse_line
from agent_telemetryd.ingest import Ingestor, Source
from tests.fakes.ingest_parts import RecordingWriter, daemon_transforms

_NAMES = [
    "status", "tool", "model", "tokens_in", "gen_ai.usage.input_tokens", "cost_usd",
    "duration_ms", "password", "api_key", "token", "token_count", "auth", "session_id",
    "version", "prompt", "gen_ai.prompt.0.content", "input.value", "log.body",
    "gen_ai.tool.call.arguments", "alice@example.com", "/home/bob/notes", "10.0.0.7",
    "$ai_latency", "$ai_is_error", "error", "tool_parameters", "role", "content", "text",
    "parts",
]  # fmt: skip
_TEXTS = [
    "ok", "search", "model-1", "alice@example.com", "bob%40example.org", "/home/carol/src",
    "/Users/dave/x", "C:\\Users\\erin\\y", "10.1.2.3", "fe80::1:2:3:4", "127.0.0.1",
    "version 1.2.3.4", "sk-ant-abcdefghijklmnopqrstuvwx", "ghp_" + "a" * 36,
    "AKIAABCDEFGHIJKLMNOP", "password=hunter2", "Bearer abcdefgh12345678",
    "https://u:p@host/x", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "1520", "0.25", "",
    "[content: 5 chars]", "x" * 300, "é ü 日本",
]  # fmt: skip
_KEYS = st.sampled_from(_NAMES) | st.text(max_size=10)
_LEAVES = (
    st.sampled_from(_TEXTS)
    | st.text(max_size=12)
    | st.integers(-(2**53), 2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.booleans()
    | st.none()
)
_TREES = st.recursive(
    _LEAVES,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(_KEYS, children, max_size=3),
    max_leaves=8,
)
_EVENT_NAMES = st.sampled_from(
    ["tool.call", "claude_code.user_prompt", "claude_code.api_request", "codex.tool_result",
     "gemini_cli.api_request", "alice@example.com", "/home/bob/run"]
)  # fmt: skip
_EVENTS = st.fixed_dictionaries(
    {
        "event": _EVENT_NAMES,
        "properties": st.dictionaries(_KEYS, _TREES, max_size=6),
        "timestamp": st.sampled_from(
            ["2026-12-02T12:00:00.123Z", "2026-12-02T12:00:01.999Z", "2026-12-02T13:00:00+01:00"]
        ),
        "uuid": st.uuids(version=4).map(str),
    },
    optional={"agent": st.sampled_from(["steady-1", "bob@example.com", "/home/x/agent"])},
)


def _line(document: dict[str, Any], escaped: bool) -> bytes:
    try:
        line = orjson.dumps(document)
    except TypeError:  # an integer beyond 64 bits, as other encoders write them
        line = json.dumps(document, separators=(",", ":")).encode()
    if escaped:
        # The same document written with escapes: `@` and `/` as JSON allows them.
        line = line.replace(b"@", b"\\u0040").replace(b"/", b"\\/")
    return line


def _ingestor(
    rows: RecordingWriter, capture_content: bool, *, one_by_one: bool = False
) -> Ingestor:
    transforms = daemon_transforms(capture_content=capture_content, one_by_one=one_by_one)
    return Ingestor(
        limits=Limits(max_keys=64, max_event_bytes=300),
        mode=lambda: "upload",
        writer=lambda: rows,  # type: ignore[arg-type, return-value]
        anonymous_id=lambda: "anon",
        transforms=transforms,
        clock=lambda: 1_764_676_800.0,
    )


def _stored(
    ingestor: Ingestor, rows: RecordingWriter, lines: list[bytes]
) -> tuple[list[Any], list[str], dict[str, int]]:
    """The rows written, the reasons for the events refused, and the counters."""
    rows.rows.clear()
    rows.counters.clear()
    outcome = ingestor.accept_lines(lines, Source("unix", pid=7))
    return list(rows.rows), [r.reason for r in outcome.rejected], dict(rows.counters)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.tuples(_EVENTS, st.booleans()), min_size=1, max_size=6),
    st.booleans(),
    st.lists(st.sampled_from([b"{not json", b"[1,2]", b'{"event": 5}', b'{"zz": 1}']), max_size=2),
)
def test_a_warm_ingestor_stores_what_a_fresh_one_stores(
    events: list[tuple[dict[str, Any], bool]], capture_content: bool, bad: list[bytes]
) -> None:
    lines = [_line(document, escaped) for document, escaped in events] + bad
    warm_rows = RecordingWriter()
    warm = _ingestor(warm_rows, capture_content)
    _stored(warm, warm_rows, lines)  # seen once: everything in them is remembered now
    # Once more, in another order, and each line with other values of its shape.
    again = lines[::-1] + [_line(_other_values(d), e) for d, e in events]
    got_rows, got_rejected, got_counters = _stored(warm, warm_rows, again)
    want_rows: list[Any] = []
    want_rejected: list[str] = []
    want_counters: dict[str, int] = {}
    for line in again:
        fresh_rows = RecordingWriter()
        rows, rejected, counters = _stored(
            _ingestor(fresh_rows, capture_content), fresh_rows, [line]
        )
        want_rows += rows
        want_rejected += rejected
        for name, value in counters.items():
            want_counters[name] = want_counters.get(name, 0) + value
    assert got_rows == want_rows
    assert got_rejected == want_rejected
    assert got_counters == want_counters


def _other_values(document: dict[str, Any]) -> dict[str, Any]:
    """The same event with its top-level property values of another kind."""
    flip: dict[type, Any] = {str: 7, int: "42", float: "0.5", bool: None, type(None): "ok"}
    properties = {k: flip.get(type(v), v) for k, v in document["properties"].items()}
    return {**document, "properties": properties}


# Events as shims send them: flat properties of plain names and texts (the ones taken
# whole by a known shape), among them names the vocabulary renames and texts and names
# the scrubber changes.
_FLAT_EVENTS = st.fixed_dictionaries(
    {
        "event": st.sampled_from(["tool.call", "llm.call", "alice@example.com", "codex.x"]),
        "properties": st.dictionaries(
            st.sampled_from(["status", "tool", "model", "tokens_in", "cost_usd", "sent_ns",
                             "input_tokens", "token", "password", "gen_ai.prompt", "path",
                             "role", "text"]),
            st.sampled_from(["ok", "search", "model-1", "1520", "alice@example.com", "", "y" * 60])
            | st.integers(-(2**70), 2**70)
            | st.floats(allow_nan=False, allow_infinity=False)
            | st.booleans()
            | st.none(),
            max_size=6,
        ),
        "timestamp": st.sampled_from(["2026-12-02T12:00:00.123Z", "2026-12-02T12:00:01.5Z"]),
        "uuid": st.uuids(version=4).map(str) | st.uuids(version=4).map(lambda u: str(u).upper()),
    },
    optional={"agent": st.sampled_from(["steady-1", "bob@example.com"])},
)  # fmt: skip


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.tuples(_EVENTS | _FLAT_EVENTS, st.booleans()), min_size=1, max_size=8),
    st.booleans(),
)
def test_the_planned_paths_store_what_the_transforms_one_by_one_store(
    events: list[tuple[dict[str, Any], bool]], capture_content: bool
) -> None:
    lines = [_line(document, escaped) for document, escaped in events]
    planned_rows, plain_rows = RecordingWriter(), RecordingWriter()
    planned = _ingestor(planned_rows, capture_content)
    plain = _ingestor(plain_rows, capture_content, one_by_one=True)
    # Seen once (in a read before, as ingest.sock takes them): every shape, name and
    # second is known now, so the planned paths take what they can.
    _stored(planned, planned_rows, lines)
    _stored(plain, plain_rows, lines)
    again = lines[::-1] + [_line(_other_values(d), e) for d, e in events]
    assert _stored(planned, planned_rows, again) == _stored(plain, plain_rows, again)


def test_a_role_beside_what_was_said_is_masked_on_every_path() -> None:
    """A `role` alone (an agent's, a user's) takes the planned paths; beside a text it is a
    chat message's, masked whatever shapes with those names were seen before."""
    shapes = [{"role": "planner", "step": 3}, {"text": "hi", "step": 3}, {"role": 7, "text": "hi"}]
    message = {"role": "user", "text": "hi", "step": 3}
    lines = [
        _line({"event": "agent.step", "properties": properties, "uuid": f"{n:032x}"}, False)
        for n, properties in enumerate([*shapes, message])
    ]
    planned_rows, plain_rows = RecordingWriter(), RecordingWriter()
    planned = _ingestor(planned_rows, capture_content=False)
    plain = _ingestor(plain_rows, capture_content=False, one_by_one=True)
    _stored(planned, planned_rows, lines)
    _stored(plain, plain_rows, lines)
    stored = _stored(planned, planned_rows, lines)
    assert stored == _stored(plain, plain_rows, lines)
    assert [orjson.loads(row.properties) for row in stored[0]] == [
        *shapes,
        {**message, "text": "[content: 2 chars]"},
    ]


_JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**80), 2**80)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=6),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=4), children, max_size=3)
    ),
    max_leaves=6,
)
# Numbers as JSON may spell them, which orjson and msgspec must read alike.
_NUMBER_TEXTS = st.sampled_from(
    [b"1e5", b"-0", b"-0.0", b"1E400", b"2.5e-3", b"18446744073709551616", b"-9223372036854775809",
     b"123456789012345678901234567890", b"0.30000000000000004", b"1e-400", b"9007199254740993"]
)  # fmt: skip


@settings(max_examples=400, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["event", "properties", "timestamp", "uuid", "agent", "trace_id", "zz"]),
        st.sampled_from(["tool.call", "", "x" * 201, "a\u0001b", "2026-12-02T12:00:00.123Z"])
        | st.uuids().map(str)
        | _JSON_VALUES,
    ),
    st.lists(_NUMBER_TEXTS, max_size=3),
)
def test_the_line_decoder_accepts_only_what_validation_accepts(
    document: dict[str, Any], numbers: list[bytes]
) -> None:
    line = _line(document, escaped=False)
    if numbers and isinstance(document.get("properties"), dict):
        # Numbers written as no encoder writes them, in the properties.
        extra = b",".join(b'"n%d":%s' % (i, n) for i, n in enumerate(numbers))
        line = line.replace(
            b'"properties":{',
            b'"properties":{' + extra + (b"," if document["properties"] else b""),
            1,
        )
    validator = Validator(Limits(max_keys=64, max_event_bytes=300))
    for _ in range(2):  # the second time names and seconds are known
        checked = validator.check_line(line)
        try:
            expected: Event | None = validator.validate(parse_line(line))
        except EventError:
            expected = None
        if checked is not None:
            assert expected is not None
            assert expected.trace_id is None and expected.span_id is None
            assert checked == (
                expected.event,
                expected.properties,
                expected.ts_ms,
                expected.uuid,
                expected.agent,
            )
            assert orjson.dumps(checked[1]) == orjson.dumps(expected.properties)


def test_a_line_of_a_known_shape_over_the_size_limit_is_refused() -> None:
    rows = RecordingWriter()
    ingestor = _ingestor(rows, capture_content=False)

    def line(size: int) -> bytes:
        # Sent, the properties are `size` bytes of JSON; renamed, 15 more.
        properties = {"model": "m", "a": "y" * 60, "b": "y" * 60, "c": "y" * 60, "e": "y" * 30}
        properties["d"] = "y" * (size - len(orjson.dumps(properties)) - 7)
        document = {"event": "tool.call", "properties": properties}
        return _line({**document, "timestamp": "2026-12-02T12:00:00.123Z"}, False)

    _stored(ingestor, rows, [line(200)])  # the shape, its names and its second are known
    stored, rejected, _ = _stored(ingestor, rows, [line(300), line(301)])
    # The limit is on what was sent: the renamed model makes the stored JSON longer.
    assert [len(row.properties) for row in stored] == [315]
    assert rejected == ["field 'properties' is 301 bytes encoded; the limit is 300"]


def test_a_uuid_with_a_line_break_after_it_is_refused_on_every_path() -> None:
    rows = RecordingWriter()
    ingestor = _ingestor(rows, capture_content=False)
    good = "0193a5c1-e000-7000-8000-000000000001"

    def line(uuid: str) -> bytes:
        document = {"event": "tool.call", "properties": {"model": "m"}, "uuid": uuid}
        return _line({**document, "timestamp": "2026-12-02T12:00:00.123Z"}, False)

    first, rejected, _ = _stored(ingestor, rows, [line(good), line(good + "\n")])
    assert [row.uuid for row in first] == [good]  # a fresh shape: the full validation
    assert rejected == ["field 'uuid' is not a UUID"]
    again, rejected, _ = _stored(ingestor, rows, [line(good + "\n")])
    assert again == []  # a known shape: the one-step path
    assert rejected == ["field 'uuid' is not a UUID"]
