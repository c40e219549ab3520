"""Spans → events (one per span): the span's name, its start as `timestamp`, its length as
`duration_ms`, its ids as the event's trace context, its attributes as properties.

A failed span (status ERROR) gets `status: "error"` and, when it can be told, `error.type`:
the span's own `error.type` attribute, else the `exception.type` of its first exception
event. That event's message and stack trace are kept as `exception.message` and
`exception.stacktrace`: text, which the scrubber reads after this (home paths, secrets).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from agent_telemetryd.events import Event, EventError
from agent_telemetryd.otlp.decoded import Decoded, Refused, scope_properties
from agent_telemetryd.otlp.event_checks import EventChecks
from agent_telemetryd.otlp.identity import span_uuid
from agent_telemetryd.otlp.values import (
    NANOS_PER_MS,
    SPAN_ID_BYTES,
    TRACE_ID_BYTES,
    attributes,
    duration_ms,
    read_attributes,
    rfc3339,
    text,
    time_ms,
)
from agent_telemetryd.privacy.content import ContentMask

SPAN_KINDS = {
    Span.SPAN_KIND_INTERNAL: "internal",
    Span.SPAN_KIND_SERVER: "server",
    Span.SPAN_KIND_CLIENT: "client",
    Span.SPAN_KIND_PRODUCER: "producer",
    Span.SPAN_KIND_CONSUMER: "consumer",
}
STATUS_NAMES = {Status.STATUS_CODE_OK: "ok", Status.STATUS_CODE_ERROR: "error"}
EXCEPTION_EVENT = "exception"
# What an exception event says, kept on the span's event (as text: the scrubber reads it).
EXCEPTION_KEYS = ("exception.type", "exception.message", "exception.stacktrace")

NO_NAME = "span has no name"
BAD_TRACE_ID = "span has no valid trace_id (16 bytes, 32 hex digits, not all zero)"
BAD_SPAN_ID = "span has no valid span_id (8 bytes, 16 hex digits, not all zero)"
BAD_PARENT_ID = "span has an invalid parent_span_id (8 bytes, 16 hex digits, not all zero)"
NO_START = "span has no start_time_unix_nano"
ENDS_BEFORE_START = "span ends before it starts"
_ZERO_TRACE_ID = bytes(TRACE_ID_BYTES)
_ZERO_SPAN_ID = bytes(SPAN_ID_BYTES)


def map_traces(request: ExportTraceServiceRequest, out: Decoded) -> None:
    # `Decoded.take` inlined, with the checks for spans: this loop runs once per span.
    events, refused, checks, mask = out.events, out.refused, out.checks, out.mask
    known = out.known_pairs
    for resource_spans in request.resource_spans:
        agent = out.add_resource(resource_spans.resource).agent
        for scope_spans in resource_spans.scope_spans:
            scope = scope_properties(scope_spans.scope)
            for span in scope_spans.spans:
                try:
                    events.append(span_event(span, agent, scope, checks, mask, known))
                except (Refused, EventError) as reason:
                    refused.append(str(reason))
                except Exception as error:  # a value no rule foresaw; the type says which
                    refused.append(f"could not be read ({type(error).__name__})")


def span_event(
    span: Span,
    agent: str | None,
    scope: dict[str, Any],
    checks: EventChecks,
    mask: ContentMask | None = None,
    known: dict[bytes, tuple[str, Any]] | None = None,
) -> Event:
    name = span.name
    if not name:
        raise Refused(NO_NAME)
    # Each field is read once: every read of a protobuf field makes a Python object.
    raw_trace, raw_span, raw_parent = span.trace_id, span.span_id, span.parent_span_id
    parent_span_id = _parent_of_valid_ids(raw_trace, raw_span, raw_parent)
    start_ns, end_ns = span.start_time_unix_nano, span.end_time_unix_nano
    if not start_ns:
        raise Refused(NO_START)
    if end_ns and end_ns < start_ns:
        raise Refused(ENDS_BEFORE_START)
    start_ms = start_ns // NANOS_PER_MS

    properties = scope.copy()
    nested = read_attributes(span.attributes, properties, {} if known is None else known)
    if end_ns:
        # Microseconds kept: a fast tool call is well under a millisecond.
        properties["duration_ms"] = duration_ms(end_ns - start_ns)
    kind = SPAN_KINDS.get(span.kind)
    if kind is not None:
        properties["span.kind"] = kind
    events = span.events
    if events:
        _add_events(events, properties)
        nested = nested or "span.events" in properties
    status = span.status
    if status.code:
        _add_status(status, properties)
    links = span.links
    if links:
        properties["span.links"] = [
            {"trace_id": link.trace_id.hex(), "span_id": link.span_id.hex()} for link in links
        ]
        nested = True  # their keys count against the limit too
    # A span's time is in range: a uint64 of nanoseconds ends in the year 2554.
    return checks.span(
        name,
        properties,
        start_ms,
        span_uuid(start_ms, raw_trace, raw_span),
        agent,
        raw_trace.hex(),
        raw_span.hex(),
        parent_span_id,
        nested,
        mask,
    )


def _parent_of_valid_ids(trace_id: bytes, span_id: bytes, parent_id: bytes) -> str | None:
    """The parent span id in hex, or None; refuses ids of the wrong size or all zeros (an
    empty trace or span id is of the wrong size too)."""
    if len(trace_id) != TRACE_ID_BYTES or trace_id == _ZERO_TRACE_ID:
        raise Refused(BAD_TRACE_ID)
    if len(span_id) != SPAN_ID_BYTES or span_id == _ZERO_SPAN_ID:
        raise Refused(BAD_SPAN_ID)
    if not parent_id:
        return None
    if len(parent_id) != SPAN_ID_BYTES or parent_id == _ZERO_SPAN_ID:
        raise Refused(BAD_PARENT_ID)
    return parent_id.hex()


def _add_status(status: Status, properties: dict[str, Any]) -> None:
    name = STATUS_NAMES.get(status.code)
    if name is None:
        return
    properties["status"] = name
    if status.message:
        properties["status.message"] = status.message
    if name == "error" and "error.type" not in properties:
        error_type = properties.get("exception.type")
        if error_type is not None:
            properties["error.type"] = error_type


def _add_events(events: Iterable[Span.Event], properties: dict[str, Any]) -> None:
    """The first exception event's fields onto the span's properties; the other events (with
    their attributes, which the content rules read too) as a list under `span.events`."""
    others: list[dict[str, Any]] = []
    exception_taken = False
    for event in events:
        values = attributes(event.attributes)
        if event.name == EXCEPTION_EVENT and not exception_taken:
            exception_taken = True
            for key in EXCEPTION_KEYS:
                if values.get(key) is not None and key not in properties:
                    properties[key] = text(values[key])
            continue
        entry: dict[str, Any] = {"name": event.name}
        at = time_ms(event.time_unix_nano)
        if at is not None:
            entry["timestamp"] = rfc3339(at)
        if values:
            entry["attributes"] = values
        others.append(entry)
    if others:
        properties["span.events"] = others
