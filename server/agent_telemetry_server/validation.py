"""Batch and event validation. Pure: no I/O, plain dicts in, records or reasons out.

Error rule (used by /api/v1/analytics/errors and the rollups): an event is an error when
its name ends in `.error` or `.failed`, or `properties.status` is "error" or "failed", or
`properties.error` is present and not null, false, 0 or "" (an error count or code of 0
means none). The daemon's dashboard applies the same rule (agent_telemetryd.dashboard.rollup).
"""

from __future__ import annotations

import hashlib
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from agent_telemetry_server.config import Settings

EVENT_FIELDS = frozenset({"uuid", "event", "timestamp", "properties", "received_at", "agent"})
BODY_FIELDS = frozenset({"anonymous_id", "events"})
MAX_NAME_LENGTH = 200
ERROR_RULE = (
    "an event is an error when its name ends in '.error' or '.failed', or properties.status"
    " is 'error' or 'failed', or properties.error is present and not null, false, 0 or ''"
)
# Clocks drift; a day ahead is clearly wrong, a few minutes is not.
MAX_FUTURE = timedelta(days=1)
# No event predates the Unix epoch; a time near year 1 or 9999 would not even survive
# the conversion to UTC on its way into PostgreSQL (an OverflowError, a 500 for the batch).
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# The server passes its configured retention; other callers (bench/) get the default.
_DEFAULT_RETENTION_DAYS = Settings.retention_days
# About 31 years: no agent step takes that long, so a larger duration_ms is a wrong value
# and is left out of the durations, as out-of-range tokens and cost are (the event is
# kept). Sums and averages of durations this size stay far inside a float8.
MAX_DURATION_MS = 1e12
# Levels of nesting in `properties`, the object itself being level 1, as the daemon counts
# them (its own limit is 10 by default, and configurable). Far below the 254 levels orjson
# can encode: past that, storing the event would fail its whole batch.
MAX_PROPERTIES_DEPTH = 64

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# Halves of a UTF-16 pair on their own: valid JSON escapes (jsonbody.py), but no text
# PostgreSQL or UTF-8 can hold.
_SURROGATE = re.compile("[\ud800-\udfff]")
_IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x7e]{1,200}$")


class BodyError(ValueError):
    """The request body as a whole is unusable (400)."""


class EventTooLarge(ValueError):
    """One event is over the per-event limit (413 for the whole request)."""

    def __init__(self, index: int, size: int, limit: int) -> None:
        super().__init__(f"event {index} is {size} bytes, over the {limit}-byte limit")
        self.index = index


@dataclass(frozen=True, slots=True)
class EventRecord:
    """One valid event, in the column order of the `events` table."""

    uuid: uuid.UUID
    ts: datetime
    received_at: datetime | None
    anonymous_id: uuid.UUID
    event: str
    agent: str | None
    is_error: bool
    duration_ms: float | None
    properties: str  # encoded JSON, passed to jsonb as text

    def as_row(self) -> tuple[Any, ...]:
        return (
            self.uuid,
            self.ts,
            self.received_at,
            self.anonymous_id,
            self.event,
            self.agent,
            self.is_error,
            self.duration_ms,
            self.properties,
        )


COLUMNS = (
    "uuid",
    "ts",
    "received_at",
    "anonymous_id",
    "event",
    "agent",
    "is_error",
    "duration_ms",
    "properties",
)


@dataclass(frozen=True)
class Batch:
    anonymous_id: uuid.UUID
    records: list[EventRecord]
    rejected: list[dict[str, Any]]
    total: int


class _Reject(ValueError):
    pass


def parse_uuid(value: Any, name: str) -> uuid.UUID:
    if not isinstance(value, str):
        raise _Reject(f"{name}: must be a UUID string")
    try:
        return uuid.UUID(value)
    except ValueError:
        raise _Reject(f"{name}: not a valid UUID") from None


def parse_time(value: Any, name: str) -> datetime:
    """RFC 3339 with an offset (`Z` or `±hh:mm`); naive times are refused, not guessed."""
    if not isinstance(value, str) or not 10 <= len(value) <= 40:
        raise _Reject(f"{name}: must be an RFC 3339 string")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise _Reject(f"{name}: not RFC 3339") from None
    if parsed.tzinfo is None or "T" not in value.upper():
        raise _Reject(f"{name}: needs a date, a time and a UTC offset")
    return parsed


def check_time(
    value: datetime, name: str, now: datetime, retention_days: int | None = None
) -> datetime:
    """`value` if it is from 1970 on, inside the retention window, and at most a day ahead."""
    if value < EPOCH:
        raise _Reject(f"{name}: before 1970")
    if value - now > MAX_FUTURE:
        raise _Reject(f"{name}: more than a day in the future")
    # As a difference, not `now - window`: that would overflow for a window of millennia.
    if retention_days is not None and now - value > timedelta(days=retention_days):
        raise _Reject(f"{name}: older than the {retention_days}-day retention window")
    return value


def clean_agent(value: str) -> str | None:
    """`properties.agent` as an agent name: free-form text made one clean line, else None.

    Properties are the client's own data, so an odd value there is tidied, never a reason
    to refuse the event (the top-level `agent`, part of the contract, is checked strictly).
    """
    cleaned = " ".join(_CONTROL.sub(" ", value).split())[:MAX_NAME_LENGTH]
    return cleaned or None


def is_error(event: str, properties: dict[str, Any]) -> bool:
    """The documented error rule (module docstring)."""
    if event.endswith((".error", ".failed")):
        return True
    if properties.get("status") in ("error", "failed"):
        return True
    # `in` compares with ==, so this tuple also covers 0, 0.0 and False alike.
    return properties.get("error") not in (None, False, "")


def duration_ms(properties: dict[str, Any]) -> float | None:
    """`properties.duration_ms` when it is a number from 0 to MAX_DURATION_MS."""
    value = properties.get("duration_ms")
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    # Compared before float(): NaN fails both tests, and a huge int is refused, not converted.
    # `+ 0.0` turns -0.0 (valid JSON, and inside the range) into 0.0: stored as it came,
    # it was answered back as a duration of "-0.0" ms in every view that shows one.
    return float(value) + 0.0 if 0 <= value <= MAX_DURATION_MS else None


def nested_too_deep(node: dict[str, Any] | list[Any], levels_left: int) -> bool:
    """Whether objects or arrays inside `node` go more than `levels_left` levels deeper.

    Only containers are descended into, so flat properties cost one pass over their values.
    """
    for child in node.values() if isinstance(node, dict) else node:
        if isinstance(child, dict | list) and (
            levels_left == 0 or nested_too_deep(child, levels_left - 1)
        ):
            return True
    return False


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any("\x00" in k or _has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_nul(v) for v in value)
    return False


def _name(value: Any, field: str, required: bool) -> str | None:
    if value is None and not required:
        return None
    if not isinstance(value, str) or not 1 <= len(value) <= MAX_NAME_LENGTH:
        raise _Reject(f"{field}: must be a string of 1 to {MAX_NAME_LENGTH} characters")
    if _CONTROL.search(value):
        raise _Reject(f"{field}: contains control characters")
    if _SURROGATE.search(value):
        raise _Reject(f"{field}: contains a lone surrogate, which is not text")
    return value


def _properties(value: Any) -> tuple[dict[str, Any], bytes]:
    """`properties` (absent or null: none) and its JSON encoding, or _Reject."""
    properties = {} if value is None else value
    if not isinstance(properties, dict):
        raise _Reject("properties: must be a JSON object")
    # Checked before encoding: the body decoder accepts deeper nesting than orjson.dumps.
    if nested_too_deep(properties, MAX_PROPERTIES_DEPTH - 1):
        raise _Reject(f"properties: nested deeper than {MAX_PROPERTIES_DEPTH} levels")
    try:
        return properties, orjson.dumps(properties)
    except orjson.JSONEncodeError:
        # What the body's second reading lets through (jsonbody.py): a number beyond a
        # double's range, or a lone surrogate. Either way it is this event's fault only.
        raise _Reject(
            "properties: cannot be stored as JSON (a number out of range, or a lone surrogate)"
        ) from None


def parse_event(
    raw: Any,
    index: int,
    anonymous_id: uuid.UUID,
    now: datetime,
    max_event_bytes: int,
    retention_days: int = _DEFAULT_RETENTION_DAYS,
) -> EventRecord:
    """One wire event → EventRecord. Raises _Reject (a reason) or EventTooLarge."""
    if not isinstance(raw, dict):
        raise _Reject("event must be a JSON object")
    unknown = sorted(set(raw) - EVENT_FIELDS)
    if unknown:
        # Cut: the name is the client's, and the reason is echoed and kept for replays.
        raise _Reject(f"unknown field {unknown[0][:60]!r}")
    for required in ("uuid", "event", "timestamp"):
        if required not in raw:
            raise _Reject(f"{required}: required")
    properties, encoded = _properties(raw.get("properties"))
    size = len(encoded) + len(str(raw.get("event"))) + len(str(raw.get("agent") or ""))
    if size > max_event_bytes:
        raise EventTooLarge(index, size, max_event_bytes)
    # PostgreSQL text and jsonb cannot hold U+0000; orjson writes it as \u0000.
    if b"\\u0000" in encoded and _has_nul(properties):
        raise _Reject("properties: contains a NUL character")
    event_uuid = parse_uuid(raw["uuid"], "uuid")
    name = _name(raw["event"], "event", required=True)
    assert name is not None
    # An empty agent means "not named", as null does (the daemon sends "" for unknown sources).
    agent = _name(raw.get("agent") or None, "agent", required=False)
    if agent is None and isinstance(properties.get("agent"), str):
        # The shim's examples put the agent in properties; use it when the source is absent.
        agent = clean_agent(properties["agent"])
    # An event older than the window would be stored only for the next retention run to
    # delete it (on TimescaleDB, after making a chunk for its day).
    ts = check_time(parse_time(raw["timestamp"], "timestamp"), "timestamp", now, retention_days)
    received = raw.get("received_at")
    received_at = None
    if received is not None:
        # Bounded only so it can be stored: retention goes by `ts`, not by this.
        received_at = check_time(parse_time(received, "received_at"), "received_at", now)
    return EventRecord(
        uuid=event_uuid,
        ts=ts,
        received_at=received_at,
        anonymous_id=anonymous_id,
        event=name,
        agent=agent,
        is_error=is_error(name, properties),
        duration_ms=duration_ms(properties),
        properties=encoded.decode(),
    )


def parse_envelope(body: Any, max_events: int) -> tuple[uuid.UUID, list[Any]]:
    """The batch envelope → (anonymous_id, raw events). Raises BodyError (400)."""
    if not isinstance(body, dict):
        raise BodyError("body must be a JSON object")
    unknown = sorted(set(body) - BODY_FIELDS)
    if unknown:
        raise BodyError(f"unknown field {unknown[0][:60]!r}")
    try:
        anonymous_id = parse_uuid(body.get("anonymous_id"), "anonymous_id")
    except _Reject as exc:
        raise BodyError(str(exc)) from None
    events = body.get("events")
    if not isinstance(events, list):
        raise BodyError("events: must be a JSON array")
    if len(events) > max_events:
        raise EventTooLarge(-1, len(events), max_events)
    return anonymous_id, events


def parse_events(
    anonymous_id: uuid.UUID,
    events: list[Any],
    now: datetime,
    max_event_bytes: int,
    retention_days: int = _DEFAULT_RETENTION_DAYS,
) -> Batch:
    """Validate each event; the valid ones become records, the others reasons by index."""
    records: list[EventRecord] = []
    rejected: list[dict[str, Any]] = []
    for index, raw in enumerate(events):
        try:
            records.append(
                parse_event(raw, index, anonymous_id, now, max_event_bytes, retention_days)
            )
        except _Reject as exc:
            rejected.append({"index": index, "reason": str(exc)})
    return Batch(anonymous_id, records, rejected, len(events))


def valid_idempotency_key(value: str) -> bool:
    """Printable ASCII without spaces, at most 200 characters (a batch id is a UUID)."""
    return bool(_IDEMPOTENCY_KEY.match(value))


def fingerprint(records: list[EventRecord], rejected: list[dict[str, Any]]) -> str:
    """What makes two requests "the same batch": its event uuids and rejected indexes.

    Not a hash of the bytes, so a client that re-encodes a batch on retry still matches.
    """
    digest = hashlib.sha256()
    for record in sorted(records, key=lambda r: r.uuid.bytes):
        digest.update(record.uuid.bytes)
    for item in rejected:
        digest.update(str(item["index"]).encode() + b",")
    return digest.hexdigest()
