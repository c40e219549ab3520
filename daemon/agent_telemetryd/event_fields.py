"""The fields of an event as agents send it: one check each, and the error they raise.
No I/O.

Each check takes a decoded value and gives it back normalised, or raises an `EventError`
whose message names the field and says what to fix. `Validator` (events.py) runs them in
the order their errors are reported, with its shortcuts for what repeats.
"""

from __future__ import annotations

import re
import uuid as uuid_module
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import compress
from typing import Any

import orjson

MAX_EVENT_NAME = 200
MAX_AGENT_NAME = 100
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
CANONICAL_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\Z")
# W3C Trace Context ids: lowercase hex, 16 bytes for a trace, 8 for a span.
TRACE_ID = re.compile(r"[0-9a-f]{32}")
SPAN_ID = re.compile(r"[0-9a-f]{16}")
_CONTAINERS = frozenset({dict, list})
_IS_CONTAINER = _CONTAINERS.__contains__


class EventError(ValueError):
    """An event that cannot be kept. The message never holds values, but it may quote a
    field name the client chose: log `log_reason(str(error))`, not the message."""


@dataclass(frozen=True, slots=True)
class Limits:
    max_event_bytes: int = 32 * 1024
    max_depth: int = 10
    max_keys: int = 256


def event_name(value: Any) -> str:
    if value is None:
        raise EventError("field 'event' is required")
    if not isinstance(value, str):
        raise EventError(f"field 'event' must be a string, not {json_type(value)}")
    if not 1 <= len(value) <= MAX_EVENT_NAME:
        raise EventError(f"field 'event' must be 1-{MAX_EVENT_NAME} characters, got {len(value)}")
    if _CONTROL.search(value):
        raise EventError("field 'event' must not contain control characters")
    return value


def checked_properties(value: Any, limits: Limits) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise EventError(f"field 'properties' must be an object, not {json_type(value)}")
    keys = len(value)
    # Only objects and arrays hold more keys (and depth): they are picked out in C, not by
    # a Python step per value, since nearly every GenAI span has an array among its
    # attributes (`gen_ai.response.finish_reasons`). Decoded JSON and the OTLP mapping
    # make plain dicts and lists only.
    values = value.values()
    if not _CONTAINERS.isdisjoint(map(type, values)):  # stops at the first one
        for child in compress(values, map(_IS_CONTAINER, map(type, values))):
            keys += count_keys(child, limits.max_depth, 2)
    if keys > limits.max_keys:
        raise EventError(f"field 'properties' has {keys} keys; the limit is {limits.max_keys}")
    size = len(orjson.dumps(value))
    if size > limits.max_event_bytes:
        raise EventError(
            f"field 'properties' is {size} bytes encoded; the limit is {limits.max_event_bytes}"
        )
    return value


def count_keys(node: Any, max_depth: int, depth: int) -> int:
    """Keys in all nested objects; raises when nesting is deeper than `max_depth`."""
    if depth > max_depth:
        raise EventError(f"field 'properties' is nested deeper than {max_depth} levels")
    if isinstance(node, dict):
        total = len(node)
        for child in node.values():
            if isinstance(child, dict | list):
                total += count_keys(child, max_depth, depth + 1)
        return total
    total = 0
    for child in node:
        if isinstance(child, dict | list):
            total += count_keys(child, max_depth, depth + 1)
    return total


def parse_timestamp(value: Any) -> int:
    if not isinstance(value, str):
        raise EventError(f"field 'timestamp' must be an RFC 3339 string, not {json_type(value)}")
    try:
        # fromisoformat also takes ISO 8601's basic form (20261124T210000Z), which is not
        # RFC 3339 and which backends will not read.
        if not _RFC3339.match(value):
            raise ValueError(value)
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise EventError(
            "field 'timestamp' is not RFC 3339 (e.g. 2026-11-24T21:00:00.123Z)"
        ) from None
    if moment.tzinfo is None:
        raise EventError("field 'timestamp' needs a UTC offset (e.g. Z or +01:00)")
    # Integer arithmetic: a float timestamp * 1000 can land a millisecond short.
    delta = moment - _EPOCH
    ms = (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000
    if not 0 <= ms < _YEAR_10000_MS:
        # Before 1970 the stored and exported form would not be RFC 3339 any more
        # (year 0 after the UTC shift), and no agent event happened then.
        raise EventError("field 'timestamp' must be between 1970 and 9999 in UTC")
    return ms


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})?$")
_YEAR_10000_MS = 253_402_300_800_000


def canonical_uuid(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise EventError(f"field 'uuid' must be a string, not {json_type(value)}")
    if CANONICAL_UUID.match(value):
        return value
    try:
        return str(uuid_module.UUID(value))
    except ValueError:
        raise EventError("field 'uuid' is not a UUID") from None


def hex_id(value: Any, field: str, shape: re.Pattern[str]) -> str | None:
    if value is None:
        return None
    digits = 32 if shape is TRACE_ID else 16
    if not isinstance(value, str):
        raise EventError(f"field {field!r} must be a string, not {json_type(value)}")
    if not shape.fullmatch(value) or value == "0" * digits:
        raise EventError(f"field {field!r} must be {digits} lowercase hex digits, not all zero")
    return value


def agent_name(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise EventError(f"field 'agent' must be a string, not {json_type(value)}")
    if not 1 <= len(value) <= MAX_AGENT_NAME or _CONTROL.search(value):
        raise EventError(
            f"field 'agent' must be 1-{MAX_AGENT_NAME} characters without control characters"
        )
    return value


def json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"
