"""What ingest stores does not depend on what it has seen before.

The ingest path remembers what repeats (names, keys, texts the rules keep, how each shape
of event is renamed) and takes shorter paths for what it recognises. Those paths must
store exactly what a daemon that has never seen anything stores: here a warm ingestor
(every line once before, and the lines around it) and a fresh one per line take the same
NDJSON lines, and every row and every rejection reason must be the same. The lines hold
what the privacy rules act on (secrets, e-mail addresses, home paths, IP addresses,
content names, secret-named keys), at any depth, also written with JSON escapes
(`\\u0040` for `@`), and names the vocabulary renames.
"""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent_telemetryd.daemon import privacy_transforms
from agent_telemetryd.events import Limits
from agent_telemetryd.ingest import Ingestor, Source

_NAMES = [
    "status", "tool", "model", "tokens_in", "gen_ai.usage.input_tokens", "cost_usd",
    "duration_ms", "password", "api_key", "token", "token_count", "auth", "session_id",
    "version", "prompt", "gen_ai.prompt.0.content", "input.value", "log.body",
    "gen_ai.tool.call.arguments", "alice@example.com", "/home/bob/notes", "10.0.0.7",
    "$ai_latency", "$ai_is_error", "error", "tool_parameters",
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
    line = orjson.dumps(document)
    if escaped:
        # The same document written with escapes: `@` and `/` as JSON allows them.
        line = line.replace(b"@", b"\\u0040").replace(b"/", b"\\/")
    return line


class _Rows:
    queued_events = 0

    def __init__(self) -> None:
        self.rows: list[Any] = []
        self.counters: dict[str, int] = {}

    def submit(self, rows: list[Any], counters: dict[str, int], **_: Any) -> None:
        self.rows.extend(rows)
        for name, value in counters.items():
            self.counters[name] = self.counters.get(name, 0) + value


def _ingestor(rows: _Rows, capture_content: bool) -> Ingestor:
    config = type(
        "Config",
        (),
        {
            "allow_events": None,
            "allow_properties": None,
            "capture_content": capture_content,
            "max_string_chars": 64,
        },
    )
    return Ingestor(
        limits=Limits(max_keys=64),
        mode=lambda: "upload",
        writer=lambda: rows,  # type: ignore[arg-type, return-value]
        anonymous_id=lambda: "anon",
        transforms=privacy_transforms(config),  # type: ignore[arg-type]
        clock=lambda: 1_764_676_800.0,
    )


def _stored(
    ingestor: Ingestor, rows: _Rows, lines: list[bytes]
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
    warm_rows = _Rows()
    warm = _ingestor(warm_rows, capture_content)
    _stored(warm, warm_rows, lines)  # seen once: everything in them is remembered now
    # Once more, in another order, and each line with other values of its shape.
    again = lines[::-1] + [_line(_other_values(d), e) for d, e in events]
    got_rows, got_rejected, got_counters = _stored(warm, warm_rows, again)
    want_rows: list[Any] = []
    want_rejected: list[str] = []
    want_counters: dict[str, int] = {}
    for line in again:
        fresh_rows = _Rows()
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
