"""Parse, validate and normalise one event as agents send it. No I/O.

Every rejection is an `EventError` whose message names the field and says what to fix.
The client gets that message; logs get `log_reason(message)`, which leaves out the one
thing in it a client chose: the name of an unknown field.
"""

from __future__ import annotations

import re
import uuid as uuid_module
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import compress
from typing import Any

import msgspec
import orjson

ALLOWED_FIELDS = (
    "event",
    "properties",
    "timestamp",
    "uuid",
    "agent",
    "trace_id",
    "span_id",
    "parent_span_id",
)
_ALLOWED = frozenset(ALLOWED_FIELDS)
_ALLOWED_LIST = ", ".join(ALLOWED_FIELDS)
MAX_EVENT_NAME = 200
MAX_AGENT_NAME = 100
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
CANONICAL_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\Z")
# W3C Trace Context ids: lowercase hex, 16 bytes for a trace, 8 for a span.
_TRACE_ID = re.compile(r"[0-9a-f]{32}")
_SPAN_ID = re.compile(r"[0-9a-f]{16}")
_CONTAINERS = frozenset({dict, list})
_IS_CONTAINER = _CONTAINERS.__contains__
_TRACE_FIELDS = frozenset({"trace_id", "span_id", "parent_span_id"})


class EventError(ValueError):
    """An event that cannot be kept. The message never holds values, but it may quote a
    field name the client chose: log `log_reason(str(error))`, not the message."""


UNKNOWN_FIELD = "unknown field"
_UNKNOWN_FIELD_FOR_LOGS = f"{UNKNOWN_FIELD} (name not logged; allowed: {_ALLOWED_LIST})"


def log_reason(reason: str) -> str:
    """A rejection reason as logs may hold it: the same words without client-chosen text.

    Logs never hold event contents, and an unknown field's name is content:
    `{"zzz_my_password_hunter2": 1}` would put a password in the journal. Every other
    reason is fixed text with field names of the contract, and is returned unchanged.
    """
    # Whatever comes before the phrase (a caller's prefix) stays; the quoted name after it
    # goes, whatever quotes and escapes its repr() used.
    before, found, _ = reason.partition(UNKNOWN_FIELD)
    return before + _UNKNOWN_FIELD_FOR_LOGS if found else reason


@dataclass(frozen=True, slots=True)
class Limits:
    max_event_bytes: int = 32 * 1024
    max_depth: int = 10
    max_keys: int = 256


@dataclass(slots=True)
class Event:
    """A valid event; `uuid` and `ts_ms` may still be None until the daemon stamps them."""

    event: str
    properties: dict[str, Any]
    ts_ms: int | None
    uuid: str | None
    agent: str | None
    trace_id: str | None = None
    span_id: str | None = None
    parent_span_id: str | None = None


def parse_line(line: bytes | str) -> Any:
    """Decode one JSON document; raises EventError that says what is wrong with it."""
    try:
        return orjson.loads(line)
    except orjson.JSONDecodeError as error:
        message = str(error)
        if "utf-8" in message.lower() or "surrogate" in message.lower():
            raise EventError("not valid UTF-8") from None
        raise EventError(f"not valid JSON ({message.split(':', 1)[0]})") from None


_MAX_REMEMBERED = 4096


class _WireEvent(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    """An event line's shape, decoded and type-checked in C (`Validator.check_line`):
    a field of another type or name makes msgspec refuse the line, and the full checks
    take it. Lengths, names and formats are checked after, as `validate` does."""

    event: str
    properties: dict[str, Any] | None = None
    timestamp: str | None = None
    uuid: str | None = None
    agent: str | None = None
    trace_id: str | None = None
    span_id: str | None = None
    parent_span_id: str | None = None


# What `Validator.check_line` gives: (event, properties, ts_ms, uuid, agent), as `Event`
# holds them, for an event without trace fields.
CheckedLine = tuple[str, dict[str, Any], int | None, str | None, str | None]
decode_wire_event = msgspec.json.Decoder(_WireEvent).decode


class Validator:
    """Checks decoded events against the wire contract and returns them normalised.

    It remembers what bursts repeat, so the common case is a lookup: event and agent
    names seen valid before, and the start of each second a shim timestamp was in. Both
    caches are bounded and belong to this object, not to the module.
    """

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        # Both name limits and the control-character rule are the same for the two fields
        # up to MAX_AGENT_NAME; longer names are remembered only as event names.
        self._good_names: set[str] = set()
        # "YYYY-MM-DDTHH:MM:SS" (UTC) -> Unix milliseconds at the start of that second.
        # Read by the line fast path too (known_shapes.py), which never adds to it.
        self.second_starts: dict[str, int] = {}

    def validate(self, document: Any) -> Event:
        """One decoded event, normalised; raises EventError saying what is wrong."""
        if not isinstance(document, dict):
            raise EventError(f"an event must be a JSON object, not {_json_type(document)}")
        if not _ALLOWED.issuperset(document):
            field = sorted(document.keys() - _ALLOWED)[0]
            raise EventError(f"{UNKNOWN_FIELD} {field[:50]!r} (allowed: {_ALLOWED_LIST})")
        get, good_names = document.get, self._good_names
        # The common shapes take the short paths below; anything unusual goes through the
        # full checks, which also word the error.
        name = get("event")
        if type(name) is not str or name not in good_names:
            name = self._remember(event_name(name))
        agent = get("agent")
        if agent is not None and (type(agent) is not str or agent not in good_names):
            agent = agent_name(agent)
            if len(agent) <= MAX_EVENT_NAME:
                self._remember(agent)
        # Positional and inlined for the common shapes (a shim's timestamp of a second
        # seen before, a canonical uuid): each call saved is a good share of the whole.
        # The checks run in the order their errors are reported: properties, timestamp, uuid.
        properties = _properties(get("properties"), self.limits)
        timestamp = get("timestamp")
        ts_ms = None
        if timestamp is not None:
            seconds = (
                self.second_starts.get(timestamp[:19])
                if type(timestamp) is str and len(timestamp) == 24
                else None
            )
            millis = timestamp[20:23] if seconds is not None else ""
            if (
                seconds is not None
                and timestamp[19] == "."
                and timestamp[23] == "Z"
                and millis.isascii()
                and millis.isdigit()
            ):
                ts_ms = seconds + int(millis)
            else:
                ts_ms = self._timestamp(timestamp)
        uuid = get("uuid")
        if uuid is not None and (type(uuid) is not str or not CANONICAL_UUID.match(uuid)):
            uuid = _uuid(uuid)
        event = Event(name, properties, ts_ms, uuid, agent)
        if not _TRACE_FIELDS.isdisjoint(document):
            trace_id, span_id, parent_span_id = (
                get("trace_id"),
                get("span_id"),
                get("parent_span_id"),
            )
            event.trace_id = _hex_id(trace_id, "trace_id", _TRACE_ID)
            event.span_id = _hex_id(span_id, "span_id", _SPAN_ID)
            event.parent_span_id = _hex_id(parent_span_id, "parent_span_id", _SPAN_ID)
            if event.trace_id is None and (span_id is not None or parent_span_id is not None):
                # A span id means something only within its trace.
                raise EventError("field 'span_id' or 'parent_span_id' needs 'trace_id' too")
        return event

    def known_second_ms(self, timestamp: str) -> int | None:
        """Unix ms of a timestamp in the shims' form (`2026-11-24T21:00:00.123Z`) whose
        second was parsed before; None for any other (`validate` parses and words those)."""
        seconds = self.second_starts.get(timestamp[:19]) if len(timestamp) == 24 else None
        millis = timestamp[20:23]
        if (
            seconds is None
            or timestamp[19] != "."
            or timestamp[23] != "Z"
            or not millis.isascii()
            or not millis.isdigit()
        ):
            return None
        return seconds + int(millis)

    def check_line(self, line: bytes) -> CheckedLine | None:
        """One NDJSON line of the shape shims send, decoded and checked in one step, for
        the price of decoding it (msgspec checks the types as it decodes): names seen
        valid before, a timestamp of a second seen before, a canonical uuid, no trace
        fields. None for any other line, valid or not: `validate(parse_line(line))` then
        decides, and words the error, as for every line before this path existed."""
        try:
            wire = decode_wire_event(line)
        except Exception:  # whatever msgspec makes of bad input: the full checks say
            return None
        good_names = self._good_names
        name, agent, timestamp, uuid = wire.event, wire.agent, wire.timestamp, wire.uuid
        if (
            name not in good_names
            or (agent is not None and agent not in good_names)
            or wire.trace_id is not None
            or wire.span_id is not None
            or wire.parent_span_id is not None
            or (uuid is not None and not CANONICAL_UUID.match(uuid))
        ):
            return None
        ts_ms = None
        if timestamp is not None:
            ts_ms = self.known_second_ms(timestamp)
            if ts_ms is None:
                return None
        try:
            properties = _properties(wire.properties, self.limits)
        except (EventError, TypeError):
            # TypeError: an integer beyond 64 bits, which msgspec keeps as an int and
            # orjson (parse_line) reads as a float; orjson.dumps in the size check
            # refuses it, and the full path stores what it has always stored.
            return None
        return name, properties, ts_ms, uuid, agent

    def _remember(self, name: str) -> str:
        if len(self._good_names) >= _MAX_REMEMBERED:
            self._good_names.clear()
        if len(name) <= MAX_AGENT_NAME:
            self._good_names.add(name)
        return name

    def _timestamp(self, value: Any) -> int | None:
        if value is None:
            return None
        # The shims' form, `2026-11-24T21:00:00.123Z`: the seconds part repeats across a
        # burst, so its parse is remembered and only the milliseconds are read each time.
        shim_form = (
            type(value) is str and len(value) == 24 and value[19] == "." and value[23] == "Z"
        )
        if shim_form:
            seconds = self.second_starts.get(value[:19])
            millis = value[20:23]
            if seconds is not None and millis.isascii() and millis.isdigit():
                return seconds + int(millis)
        ms = _parse_timestamp(value)
        if shim_form:
            if len(self.second_starts) >= _MAX_REMEMBERED:
                self.second_starts.clear()
            self.second_starts[value[:19]] = ms - int(value[20:23])
        return ms


# A shim's report of events it lost before the daemon could take them (backlog full, too
# large, spool full, ...): `{"client_drops": {"<reason>": <count>, ...}, "agent": "<name>"}`,
# counts since its last such line. Not an event: each count is counted as received and
# dropped under `client_<reason>`, so the user sees the agent's losses in `status` too.
CLIENT_DROPS = "client_drops"
_DROP_LINE_FIELDS = frozenset((CLIENT_DROPS, "agent"))
_DROP_REASON = re.compile(r"[a-z_]{1,40}")
MAX_DROP_REASONS = 32
MAX_DROP_COUNT = 2**40  # far beyond what one process could track between two reports


def client_drop_counts(document: dict[str, Any]) -> dict[str, int]:
    """The counts of a drop-count line as drop reasons (`client_<reason>`); raises EventError.

    The reasons are text a client chose: a short lowercase word is kept, anything else is
    counted as `client_other`, so a reason can neither hold content nor grow the counters
    without bound.
    """
    if not _DROP_LINE_FIELDS.issuperset(document):
        raise EventError("drop-count line: unknown field (allowed: client_drops, agent)")
    agent = document.get("agent")
    if agent is not None and not isinstance(agent, str):
        raise EventError("drop-count line: field 'agent' must be a string")
    counts = document[CLIENT_DROPS]
    if not isinstance(counts, dict) or len(counts) > MAX_DROP_REASONS:
        raise EventError(
            f"drop-count line: 'client_drops' must be an object of at most "
            f"{MAX_DROP_REASONS} reasons"
        )
    drops: dict[str, int] = {}
    for reason, count in counts.items():
        if type(count) is not int or not 0 <= count <= MAX_DROP_COUNT:
            raise EventError(
                f"drop-count line: each count must be a whole number from 0 to {MAX_DROP_COUNT}"
            )
        name = f"client_{reason}" if _DROP_REASON.fullmatch(reason) else "client_other"
        if count:
            drops[name] = drops.get(name, 0) + count
    return drops


def validate(document: Any, limits: Limits) -> Event:
    """Check one decoded event (a one-off: a `Validator` remembers across calls)."""
    return Validator(limits).validate(document)


def event_name(value: Any) -> str:
    if value is None:
        raise EventError("field 'event' is required")
    if not isinstance(value, str):
        raise EventError(f"field 'event' must be a string, not {_json_type(value)}")
    if not 1 <= len(value) <= MAX_EVENT_NAME:
        raise EventError(f"field 'event' must be 1-{MAX_EVENT_NAME} characters, got {len(value)}")
    if _CONTROL.search(value):
        raise EventError("field 'event' must not contain control characters")
    return value


def _properties(value: Any, limits: Limits) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise EventError(f"field 'properties' must be an object, not {_json_type(value)}")
    keys = len(value)
    # Only objects and arrays hold more keys (and depth): they are picked out in C, not by
    # a Python step per value, since nearly every GenAI span has an array among its
    # attributes (`gen_ai.response.finish_reasons`). Decoded JSON and the OTLP mapping
    # make plain dicts and lists only.
    values = value.values()
    if not _CONTAINERS.isdisjoint(map(type, values)):  # stops at the first one
        for child in compress(values, map(_IS_CONTAINER, map(type, values))):
            keys += _count_keys(child, limits.max_depth, 2)
    if keys > limits.max_keys:
        raise EventError(f"field 'properties' has {keys} keys; the limit is {limits.max_keys}")
    size = len(orjson.dumps(value))
    if size > limits.max_event_bytes:
        raise EventError(
            f"field 'properties' is {size} bytes encoded; the limit is {limits.max_event_bytes}"
        )
    return value


def _count_keys(node: Any, max_depth: int, depth: int) -> int:
    """Keys in all nested objects; raises when nesting is deeper than `max_depth`."""
    if depth > max_depth:
        raise EventError(f"field 'properties' is nested deeper than {max_depth} levels")
    if isinstance(node, dict):
        total = len(node)
        for child in node.values():
            if isinstance(child, dict | list):
                total += _count_keys(child, max_depth, depth + 1)
        return total
    total = 0
    for child in node:
        if isinstance(child, dict | list):
            total += _count_keys(child, max_depth, depth + 1)
    return total


def _parse_timestamp(value: Any) -> int:
    if not isinstance(value, str):
        raise EventError(f"field 'timestamp' must be an RFC 3339 string, not {_json_type(value)}")
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


def _uuid(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise EventError(f"field 'uuid' must be a string, not {_json_type(value)}")
    if CANONICAL_UUID.match(value):
        return value
    try:
        return str(uuid_module.UUID(value))
    except ValueError:
        raise EventError("field 'uuid' is not a UUID") from None


def _hex_id(value: Any, field: str, shape: re.Pattern[str]) -> str | None:
    if value is None:
        return None
    digits = 32 if shape is _TRACE_ID else 16
    if not isinstance(value, str):
        raise EventError(f"field {field!r} must be a string, not {_json_type(value)}")
    if not shape.fullmatch(value) or value == "0" * digits:
        raise EventError(f"field {field!r} must be {digits} lowercase hex digits, not all zero")
    return value


def agent_name(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise EventError(f"field 'agent' must be a string, not {_json_type(value)}")
    if not 1 <= len(value) <= MAX_AGENT_NAME or _CONTROL.search(value):
        raise EventError(
            f"field 'agent' must be 1-{MAX_AGENT_NAME} characters without control characters"
        )
    return value


def _json_type(value: Any) -> str:
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
