"""Mapped OTLP items as checked events: content masked, then the wire's rules applied, so
the ingestor stores them without validating them again. No I/O.

The mapping writes what validation would only read back: ids in lowercase hex, times as
Unix milliseconds, uuids in canonical form, agent names cut and cleaned. What it cannot
know in advance is checked here against the ingestor's own limits: the event name, the
number of keys and the nesting of the properties, their encoded size. For a span these
are fast tests that pass what is surely valid; a name not seen before, a property holding
an object, or one over a limit goes through the `Validator` itself, whose error is the
item's refusal, in the same words as for any event. Logs, metric points and resources
are few per request or varied in shape: they go through the `Validator` whole.

Masking comes first, as it did in the ingestor, so that a long prompt costs a span only
its length, never its place.
"""

from __future__ import annotations

from typing import Any

import orjson

from agent_telemetryd.event_parts import EncodedEvent
from agent_telemetryd.events import Event, Limits, Validator
from agent_telemetryd.privacy.content import AGENT_CONTENT_NAMES, ContentMask

# Valid event names remembered, at most; then forgotten and learnt again, so hostile
# input cannot grow them without bound.
MAX_REMEMBERED = 4096


class EventChecks:
    """Makes checked `Event`s of mapped items; one per daemon, shared by the decoding
    threads (what it remembers is only ever added to or cleared whole)."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self._validator = Validator(limits)
        self._max_keys = limits.max_keys
        self._max_bytes = limits.max_event_bytes
        # Top-level arrays of scalars are at depth 2; a limit below that needs the full check.
        self._flat_is_shallow = limits.max_depth >= 2
        self._good_names: set[str] = set()

    def document(self, document: dict[str, Any], mask: ContentMask | None) -> Event:
        """A wire document (a log record's, a data point's, a resource's) masked and
        validated. Raises `EventError`."""
        if mask is not None:
            document["properties"] = mask.properties(document["properties"], document["event"])
        return self._validator.validate(document)

    def span(
        self,
        name: str,
        properties: dict[str, Any],
        ts_ms: int,
        uuid: str,
        agent: str | None,
        trace_id: str,
        span_id: str,
        parent_span_id: str | None,
        nested: bool,
        mask: ContentMask | None,
    ) -> Event:
        """A mapped span as a checked event. `nested`: a property value holds an object, or
        an array an array (only then can content or more keys hide below the top level).
        Raises `EventError` with the words validation would use."""
        if name not in self._good_names:
            self._check_name(name)
        # Masking is skipped when it can only find nothing: no name at the top is content
        # and nothing below it could hold one (written out here, not as a method: this
        # runs once per span).
        if mask is not None and (
            nested or name in AGENT_CONTENT_NAMES or not mask.all_plain(properties)
        ):
            properties = mask.properties(properties, name)
        if (
            nested
            or not self._flat_is_shallow
            or len(properties) > self._max_keys
            or len(encoded := orjson.dumps(properties)) > self._max_bytes
        ):
            # The validator counts nested keys and depth, and words any refusal.
            self._validator.validate({"event": name, "properties": properties})
            return Event(name, properties, ts_ms, uuid, agent, trace_id, span_id, parent_span_id)
        # The bytes the size check made go with the event: its row takes them when no
        # transform changes its properties (event_parts.properties_json).
        event = EncodedEvent(
            name, properties, ts_ms, uuid, agent, trace_id, span_id, parent_span_id
        )
        event.properties_json = encoded
        event.encoded = properties
        return event

    def _check_name(self, name: str) -> None:
        self._validator.validate({"event": name})  # raises for a name the wire refuses
        if len(self._good_names) >= MAX_REMEMBERED:
            self._good_names.clear()
        self._good_names.add(name)
