"""Parse, validate and normalise one event as agents send it (each field's own check is
in event_fields.py). No I/O.

Every rejection is an `EventError` whose message names the field and says what to fix.
The client gets that message; logs get `log_reason(message)`, which leaves out the one
thing in it a client chose: the name of an unknown field.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgspec
import orjson

from agent_telemetryd.event_fields import (
    CANONICAL_UUID,
    MAX_AGENT_NAME,
    MAX_EVENT_NAME,
    SPAN_ID,
    TRACE_ID,
    EventError,
    Limits,
    agent_name,
    canonical_uuid,
    checked_properties,
    event_name,
    hex_id,
    json_type,
    parse_timestamp,
)

ALLOWED_FIELDS = (
    "event",
    "properties",
    "timestamp",
    "uuid",
    "agent",
    "trace_id",
    "span_id",
    "parent_span_id",
    "local_only",
)
_ALLOWED = frozenset(ALLOWED_FIELDS)
_ALLOWED_LIST = ", ".join(ALLOWED_FIELDS)
_TRACE_FIELDS = frozenset({"trace_id", "span_id", "parent_span_id"})


UNKNOWN_FIELD = "unknown field"
_UNKNOWN_FIELD_FOR_LOGS = f"{UNKNOWN_FIELD} (name not logged; allowed: {_ALLOWED_LIST})"


def kept_local_without_unknown(document: dict[str, Any]) -> dict[str, Any] | None:
    """A shim's line that carries fields this daemon does not know, as this daemon can keep
    it: those fields left out and the event `local_only`; None when it has no such field.

    Lines on ingest.sock and in spool files get no answer, so refusing them loses the
    event with nobody told: a shim newer than the daemon (its user upgraded the agent's
    package, not the daemon) sends fields added since. Such a field may limit where the
    event may go, as `local_only` does, so the event is kept on the machine and never
    uploaded. The known fields are checked as ever; a `local_only` that is not true or
    false is left for validation to refuse."""
    if _ALLOWED.issuperset(document):
        return None
    kept = {key: value for key, value in document.items() if key in _ALLOWED}
    if type(kept.get("local_only", False)) is bool:
        kept["local_only"] = True
    return kept


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
    take it. Lengths, names and formats are checked after, as `validate` does.

    `local_only` is left out on purpose: a line that carries it takes the full path,
    where its row is kept from upload (arrival_rows.py). Only agents whose user set
    DO_NOT_TRACK send it, so the fast paths stay as they are."""

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
            raise EventError(f"an event must be a JSON object, not {json_type(document)}")
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
        properties = checked_properties(get("properties"), self.limits)
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
            uuid = canonical_uuid(uuid)
        local_only = get("local_only")
        if local_only is not None and type(local_only) is not bool:
            # Read from the document itself when its row is made (arrival_rows.py).
            raise EventError(
                f"field 'local_only' must be true or false, not {json_type(local_only)}"
            )
        event = Event(name, properties, ts_ms, uuid, agent)
        if not _TRACE_FIELDS.isdisjoint(document):
            trace_id, span_id, parent_span_id = (
                get("trace_id"),
                get("span_id"),
                get("parent_span_id"),
            )
            event.trace_id = hex_id(trace_id, "trace_id", TRACE_ID)
            event.span_id = hex_id(span_id, "span_id", SPAN_ID)
            event.parent_span_id = hex_id(parent_span_id, "parent_span_id", SPAN_ID)
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
            properties = checked_properties(wire.properties, self.limits)
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
        ms = parse_timestamp(value)
        if shim_form:
            if len(self.second_starts) >= _MAX_REMEMBERED:
                self.second_starts.clear()
            self.second_starts[value[:19]] = ms - int(value[20:23])
        return ms


def validate(document: Any, limits: Limits) -> Event:
    """Check one decoded event (a one-off: a `Validator` remembers across calls)."""
    return Validator(limits).validate(document)
