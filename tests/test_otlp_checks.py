"""Spans become checked events at the receiver, which the ingestor stores without
validating them again: what the receiver lets through, refuses and masks must be exactly
what validation and the content mask would have made of the same span.

Each case decodes a span twice: as the receiver does (masked and checked against the
limits), and with limits no span reaches and no mask, then through `ContentMask` and
`validate` as every other event goes. The two must agree: the same events, or the same
refusal in the same words.
"""

from __future__ import annotations

from typing import Any

import pytest
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from agent_telemetryd.events import EventError, Limits, validate
from agent_telemetryd.otlp.decode import PROTOBUF, decode
from agent_telemetryd.otlp.event_checks import EventChecks
from agent_telemetryd.otlp.signals import TRACES
from agent_telemetryd.privacy.content import ContentMask
from tests.otlp_messages import SPAN, TRACE, documents, span, traces

UNBOUNDED = Limits(max_event_bytes=1 << 40, max_depth=1 << 20, max_keys=1 << 40)


def nested(depth: int) -> Any:
    value: Any = "bottom"
    for _ in range(depth):
        value = {"level": value}
    return value


def with_links(count: int, **fields: Any) -> Span:
    built = span(**fields)
    for n in range(count):
        link = built.links.add()
        link.trace_id, link.span_id = TRACE, (n + 1).to_bytes(8, "big")
    return built


def with_events(*events: tuple[str, dict[str, Any]], **fields: Any) -> Span:
    built = span(**fields)
    for name, attributes in events:
        event = built.events.add(name=name, time_unix_nano=built.start_time_unix_nano)
        event.attributes.extend(span(attributes=attributes).attributes)
    return built


CASES: dict[str, Span] = {
    "plain GenAI span": span(attributes={"gen_ai.request.model": "gpt-4o", "n": 3}),
    "name of 200 characters": span("x" * 200),
    "name of 201 characters": span("x" * 201),
    "name with a control character": span("chat\ngpt-4o"),
    "256 keys in all": span(attributes={f"a{n}": n for n in range(256 - 2)}),
    "257 keys in all": span(attributes={f"a{n}": n for n in range(257 - 2)}),
    "links' keys counted": with_links(3, attributes={f"a{n}": n for n in range(248)}),
    "links within the limit": with_links(2, attributes={f"a{n}": n for n in range(248)}),
    "properties over 32 KiB": span(attributes={"text": "y" * 33_000}),
    "content over 32 KiB, masked first": span(attributes={"gen_ai.input.messages": "y" * 40_000}),
    "10 levels deep": span(attributes={"deep": nested(9)}),
    "11 levels deep": span(attributes={"deep": nested(10)}),
    "arrays in arrays": span(attributes={"grid": [[1, 2], [3, [4, [5]]]]}),
    "content in an object": span(attributes={"call": {"gen_ai.tool.call.arguments": "rm -rf"}}),
    "content in an array of objects": span(attributes={"m": [{"input.value": "hi"}, 2]}),
    "content at the top": span(
        attributes={"gen_ai.prompt.0.content": "hello", "llm.output_messages.0": "hi"}
    ),
    "content in a span event": with_events(
        ("gen_ai.content.prompt", {"gen_ai.prompt": "tell me"}), ("retry", {})
    ),
    "an agent's own content name": span("claude_code.user_prompt", attributes={"prompt": "hi"}),
    "the same word elsewhere": span("claude_code.api_request", attributes={"prompt": "hi"}),
    "an exception event": with_events(
        ("exception", {"exception.type": "ValueError", "exception.message": "bad"})
    ),
}


def as_every_event_goes(request: Any, limits: Limits) -> tuple[list[dict[str, Any]], list[str]]:
    """The span mapped with nothing checked, then masked and validated like any event."""
    decoded = decode(TRACES, request.SerializeToString(), PROTOBUF, EventChecks(UNBOUNDED))
    mask, kept, refused = ContentMask(), [], []
    for document in documents(decoded):
        document["properties"] = mask.properties(document["properties"], document["event"])
        try:
            validate(document, limits)
        except EventError as error:
            refused.append(str(error))
            continue
        kept.append(document)
    return kept, decoded.refused + refused


@pytest.mark.parametrize("limits", [Limits(), Limits(max_depth=1)], ids=["default", "depth 1"])
@pytest.mark.parametrize("case", list(CASES))
def test_the_receiver_keeps_refuses_and_masks_as_validation_and_the_mask_would(
    case: str, limits: Limits
) -> None:
    request = traces(CASES[case])
    expected = as_every_event_goes(request, limits)
    decoded = decode(
        TRACES, request.SerializeToString(), PROTOBUF, EventChecks(limits), ContentMask()
    )
    assert (documents(decoded), decoded.refused) == expected


def test_the_cases_cover_both_sides_of_every_check() -> None:
    refusals = {case: as_every_event_goes(traces(s), Limits())[1] for case, s in CASES.items()}
    refused = {case for case, reasons in refusals.items() if reasons}
    assert refused == {
        "name of 201 characters",
        "name with a control character",
        "257 keys in all",
        "links' keys counted",
        "properties over 32 KiB",
        "11 levels deep",
    }
    assert "has 257 keys" in refusals["257 keys in all"][0]


def test_checks_remember_nothing_that_lets_a_later_span_through() -> None:
    """A name or key learnt as fine in one span decides nothing about another's size."""
    checks, mask = EventChecks(Limits()), ContentMask()
    fine = traces(span("chat", attributes={"text": "y"}))
    too_big = traces(span("chat", attributes={"text": "y" * 33_000}))
    for request in (fine, too_big, fine):
        decoded = decode(TRACES, request.SerializeToString(), PROTOBUF, checks, mask)
        assert len(decoded.events) + len(decoded.refused) == 1
        assert bool(decoded.refused) == (request is too_big)


def test_a_span_and_its_ids_arrive_as_the_wire_would_have_them() -> None:
    request = traces(span(parent_span_id=SPAN[::-1]))
    (event,) = decode(TRACES, request.SerializeToString(), PROTOBUF).events
    assert (event.trace_id, event.span_id, event.parent_span_id) == (
        TRACE.hex(),
        SPAN.hex(),
        SPAN[::-1].hex(),
    )
    assert event.agent == "planner"
