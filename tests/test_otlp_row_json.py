"""A span's row takes its properties' JSON from the receiver's size check, which encoded
them already, only while nothing after the check has changed them. The rows stored for
OTLP spans must be byte for byte the rows of the same spans encoded again at the row:
here each request is decoded twice, once handed over as the receiver hands it (events
that carry their bytes) and once as plain events (encoded at the row), each into an
ingestor of its own, for attributes the vocabulary renames, the scrubber redacts, the
content mask masks and an allowlist drops, and attributes none of them touch; and with a
transform that gives the very event it was handed other properties (any `Event -> Event`
function may), which only the test of the properties' identity catches.
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent_telemetryd.daemon import privacy_transforms
from agent_telemetryd.event_parts import EncodedEvent
from agent_telemetryd.events import Event, Limits
from agent_telemetryd.ingest import Ingestor, Source
from agent_telemetryd.otlp.decode import PROTOBUF, decode
from agent_telemetryd.otlp.event_checks import EventChecks
from agent_telemetryd.otlp.signals import TRACES
from agent_telemetryd.privacy.content import ContentMask
from agent_telemetryd.receivers.otlp_export import OtlpState, hand_over
from tests.otlp_messages import SPAN, span, traces

_KEYS = [
    # Left as they are.
    "gen_ai.request.model", "gen_ai.response.id", "gen_ai.usage.input_tokens", "status",
    "gen_ai.response.finish_reasons", "otel.scope.version",
    # Renamed by the vocabulary (numbers written as text become numbers too).
    "model", "tokens_in", "completion_tokens", "cost_usd", "llm.model_name",
    # Masked as content, or a secret's name.
    "gen_ai.prompt", "input.value", "gen_ai.tool.call.arguments", "password", "api_key",
]  # fmt: skip
_TEXTS = [
    "gpt-4o", "resp_01HZX3", "ok", "1520", "0.25", "alice@example.com", "bob%40example.org",
    "/home/carol/src", "10.1.2.3", "fe80::1:2:3:4", "sk-ant-abcdefghijklmnopqrstuvwx",
    "ghp_" + "a" * 36, "AKIAABCDEFGHIJKLMNOP", "Bearer abcdefgh12345678", "x" * 300, "",
]  # fmt: skip
_VALUES = (
    st.sampled_from(_TEXTS)
    | st.text(max_size=12)
    | st.integers(-(2**53), 2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.booleans()
    | st.lists(st.sampled_from(_TEXTS) | st.integers(0, 9), max_size=3)
)
_ATTRIBUTES = st.dictionaries(st.sampled_from(_KEYS) | st.text(max_size=8), _VALUES, max_size=8)
_NAMES = st.sampled_from(["chat gpt-4o", "execute_tool search", "mail alice@example.com"])


class _Rows:
    queued_events = 0

    def __init__(self) -> None:
        self.rows: list[Any] = []

    def submit(self, rows: list[Any], counters: dict[str, int], **_: Any) -> None:
        self.rows.extend(rows)


def _tag_in_place(event: Event) -> Event:
    """A transform that changes the event it is handed rather than making a new one."""
    if len(event.properties) % 2 == 0:
        event.properties = {**event.properties, "tagged": True}
    return event


def _ingestor(
    rows: _Rows, capture_content: bool, allow: frozenset[str] | None, tag: bool
) -> Ingestor:
    config = type(
        "Config",
        (),
        {
            "allow_events": None,
            "allow_properties": allow,
            "capture_content": capture_content,
            "max_string_chars": 64,
        },
    )
    return Ingestor(
        limits=Limits(),
        mode=lambda: "local",
        writer=lambda: rows,  # type: ignore[arg-type, return-value]
        anonymous_id=lambda: "anon",
        transforms=[*privacy_transforms(config), *([_tag_in_place] if tag else [])],  # type: ignore[list-item]
        clock=lambda: 1_764_676_800.0,
    )


def _stored(
    body: bytes, mask: ContentMask | None, capture: bool, allow: Any, tag: bool, *, plain: bool
) -> tuple[list[Any], int]:
    """The rows stored for `body` by an ingestor that has taken it once before (as a
    daemon's is warm: the scrubber hands back what it has seen as the very same object),
    and how many of its events carried their bytes."""
    rows = _Rows()
    ingestor = _ingestor(rows, capture, allow, tag)
    for _ in range(2):
        rows.rows.clear()
        decoded = decode(TRACES, body, PROTOBUF, EventChecks(Limits()), mask)
        carried = sum(type(event) is EncodedEvent for event in decoded.events)
        if plain:  # the same events as the plain kind: encoded at the row
            decoded.events = [Event(*_fields(event)) for event in decoded.events]
        hand_over(ingestor, OtlpState(), decoded, Source("otlp"))
    return rows.rows, carried


def _fields(event: Event) -> tuple[Any, ...]:
    return (
        event.event,
        event.properties,
        event.ts_ms,
        event.uuid,
        event.agent,
        event.trace_id,
        event.span_id,
        event.parent_span_id,
    )


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    spans=st.lists(st.tuples(_NAMES, _ATTRIBUTES), min_size=1, max_size=4),
    setting=st.sampled_from(["masked at the receiver", "masked in ingest", "content kept"]),
    allow=st.none() | st.frozensets(st.sampled_from(_KEYS), max_size=6),
    tag=st.booleans(),
)
def test_a_spans_row_is_the_same_with_the_checks_bytes_as_encoded_again(
    spans: list[tuple[str, dict[str, Any]]],
    setting: str,
    allow: frozenset[str] | None,
    tag: bool,
) -> None:
    body = traces(
        *(
            span(name, attributes=attributes, span_id=(n + 1).to_bytes(8, "big"))
            for n, (name, attributes) in enumerate(spans)
        )
    ).SerializeToString()
    capture = setting == "content kept"
    mask = ContentMask() if setting == "masked at the receiver" else None
    carried, count = _stored(body, mask, capture, allow, tag, plain=False)
    encoded, _ = _stored(body, mask, capture, allow, tag, plain=True)
    assert count == len(spans)  # every span here is flat and small: all carry their bytes
    assert carried == encoded


def test_a_change_after_the_check_is_stored_not_the_checks_bytes() -> None:
    # One span of each: renamed, redacted, masked in ingest, an attribute not allowed.
    attributes = {
        "model": "gpt-4o",
        "gen_ai.response.id": "alice@example.com",
        "gen_ai.prompt": "write a poem",
        "status": "ok",
    }
    body = traces(span(attributes=attributes, span_id=SPAN)).SerializeToString()
    allow = frozenset(attributes) - {"status"}
    rows, count = _stored(body, None, False, allow, False, plain=False)
    assert count == 1
    stored = rows[0].properties
    assert '"gen_ai.request.model":"gpt-4o"' in stored
    assert "alice@example.com" not in stored and '"gen_ai.response.id":"' in stored
    assert "write a poem" not in stored and '"gen_ai.prompt":"[content' in stored
    assert '"status"' not in stored
