"""What a row stores of one event that did not come as a line of a known shape.

A document is validated and goes through the transforms (allowlist, vocabulary, content
mask, scrubber), or, when a receiver decoded and checked it already, only through the
transforms. A transform that fails loses that one event, never the batch or the
connection: kept unscrubbed would be worse than not kept.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

from agent_telemetryd.events import Event, EventError
from agent_telemetryd.lazy_log import get_logger
from agent_telemetryd.transform_chain import TransformChain

log = get_logger("agent_telemetryd.ingest")

# A transform returns the event to keep (possibly changed) or None to drop it quietly.
Transform = Callable[[Event], Event | None]
# (event, properties as JSON, ts_ms, uuid, agent, trace_id, span_id, parent_span_id)
StoredParts = tuple[Any, ...]


class EncodedEvent(Event):
    """A checked event that carries its properties as JSON, encoded by its receiver's size
    check, so that its row need not encode them again. Made as an `Event` is (the same
    construction), then given `properties_json` and `encoded`, the properties object the
    bytes are of. Every transform hands back the very event when it changes nothing and a
    new one (a plain `Event`, or one made by `dataclasses.replace` without these two) when
    it changes anything, so the bytes are used only while the event and its properties
    are the very objects that were encoded; anything else is encoded again."""

    __slots__ = ("encoded", "properties_json")
    properties_json: bytes
    encoded: dict[str, Any]


def properties_json(event: Event) -> str:
    """The event's properties as the row stores them: JSON text."""
    properties = event.properties
    if type(event) is EncodedEvent and getattr(event, "encoded", None) is properties:
        return event.properties_json.decode()
    return _stored_json(properties)


def _stored_json(properties: dict[str, Any]) -> str:
    """The properties as JSON text; raises EventError for what JSON cannot hold, so one
    event is refused and named, never the read or the connection it came on."""
    try:
        return orjson.dumps(properties).decode()
    except TypeError:
        # What a transform made of valid input (an integer past 64 bits): validation's
        # own encoding saw the values before it.
        raise EventError("field 'properties' holds a value that cannot be stored") from None


def already_checked(event: Event) -> Event:
    """The validation of an event its receiver has checked already (`accept_events`)."""
    return event


def stored_parts(
    document: Any,
    source_agent: str | None,
    transforms: tuple[Transform, ...],
    validate: Callable[[Any], Event],
    chain: TransformChain | None,
) -> StoredParts | None:
    """The row's parts of an event; None when a transform dropped it. Raises EventError.

    A tuple is a line `Validator.check_line` took: valid, without trace fields. With the
    daemon's own chain it is transformed on its parts, with no `Event` made.
    """
    if type(document) is tuple and chain is not None:
        name, properties, ts_ms, uuid, agent = document
        try:
            name, properties, agent = chain(
                name, properties, agent if agent is not None else source_agent
            )
        except Exception as error:  # as in prepared(): one event lost, never the batch
            log.error("event_transform_failed", error_type=type(error).__name__)
            raise EventError("could not be scrubbed; not kept") from None
        return name, _stored_json(properties), ts_ms, uuid, agent, None, None, None
    if type(document) is tuple:  # checked already, but for another chain
        event = prepared(Event(*document), source_agent, transforms, already_checked)
    else:
        event = prepared(document, source_agent, transforms, validate)
    if event is None:
        return None
    return (
        event.event,
        properties_json(event),
        event.ts_ms,
        event.uuid,
        event.agent,
        event.trace_id,
        event.span_id,
        event.parent_span_id,
    )


def prepared(
    document: Any,
    source_agent: str | None,
    transforms: tuple[Transform, ...],
    validate: Callable[[Any], Event],
) -> Event | None:
    """The event to keep, validated and transformed; None when a transform dropped it.
    Raises EventError for an invalid event, and for one a transform failed on."""
    event = validate(document)
    if event.agent is None:  # a header's name is content too: through the transforms
        event.agent = source_agent
    try:
        for transform in transforms:
            kept = transform(event)
            if kept is None:
                return None
            event = kept
    except Exception as error:  # one event lost, never the batch or the connection
        log.error("event_transform_failed", error_type=type(error).__name__)
        raise EventError("could not be scrubbed; not kept") from None
    return event
