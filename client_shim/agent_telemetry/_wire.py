"""The wire format agents send to `ingest.sock`: one definition, shared with the daemon.

One event is one compact JSON object on one line:
`{"event", "properties", "timestamp", "uuid", "agent"}`, and for a span `trace_id`, `span_id`
and `parent_span_id` (docs/architecture.md); `"local_only": true` when the agent's user set
`DO_NOT_TRACK`. A shim's drop counts travel as
`{"client_drops": {...}, "agent"}` lines.
"""

from __future__ import annotations

import functools
import json
import os
import random
import re
import threading
import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

MAX_EVENT_NAME = 200
MAX_AGENT_NAME = 100
# The daemon skips longer lines unread; dropping them here saves the trip.
MAX_LINE_BYTES = 64 * 1024
# The daemon's default limits on `properties`: an event beyond them would be
# refused there, so the shim drops and counts it instead of sending it.
MAX_PROPERTIES_BYTES = 32 * 1024
MAX_DEPTH = 10  # the properties object itself is level 1
MAX_KEYS = 256  # keys of the properties object and of every object nested in it
# Timestamps the daemon accepts: 1970-01-01 up to the end of year 9999, in UTC.
MAX_TIMESTAMP_MS = 253_402_300_800_000

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_HEX_ID = {32: re.compile(r"[0-9a-f]{32}"), 16: re.compile(r"[0-9a-f]{16}")}
_CANONICAL_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def _json_encoder() -> Callable[[Any], str]:
    """Compact JSON text of a value, as `json.dumps` with these options writes it.

    allow_nan=False because NaN/Infinity are not JSON and the daemon would reject the line.
    `JSONEncoder.encode` makes a new C encoder on every call, most of what encoding a small
    object costs (`{"i": 5}`: 1.8 µs, 0.66 µs without); this makes json's own C encoder
    once, the one `encode` would make. Without circular-reference markers:
    `check_properties` refuses nesting past MAX_DEPTH, and with it any cycle, before
    anything is encoded. Where that encoder is missing or is not what this expects (it
    is json's internal), `encode` itself, as before.
    """
    options = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:  # an interpreter without json's C accelerator
        return options.encode
    try:
        encoder = make(
            None, options.default, json.encoder.encode_basestring, None, ":", ",",
            False, False, False,
        )  # fmt: skip

        def encode(value: Any) -> str:
            return "".join(encoder(value, 0))

        sample = {"a": [1, 2.5, None, True, "é\n"], "b": {"c": -1e300}}
        if encode(sample) == options.encode(sample) and encode("x") == '"x"':
            return encode
    except Exception:
        pass
    return options.encode


_encode_json = _json_encoder()

_COUNTER_BITS = 42  # 12 bits of rand_a + the top 30 bits of rand_b (RFC 9562 §6.2, method 1)
_COUNTER_LIMIT = 1 << _COUNTER_BITS
_uuid_lock = threading.Lock()
_last_ms = 0
_counter = 0
# Ids need uniqueness, not secrecy: a Mersenne Twister seeded from os.urandom() costs ~0.1 µs
# a call where os.urandom() costs a syscall. Reseeded in a forked child (see below).
_random_bits = random.Random(os.urandom(32)).getrandbits


class LineTooLarge(ValueError):
    """The encoded event (or its properties) is larger than the daemon accepts."""


def _seed_counter() -> int:
    # Top bit left clear so a millisecond has room for 2**41 increments before it overflows.
    return _random_bits(_COUNTER_BITS - 1)


def uuid7(ms: int | None = None) -> str:
    """A UUIDv7 string (RFC 9562) for `ms` (Unix milliseconds; now when None).

    Within one process, ids for non-decreasing `ms` are strictly increasing: a 42-bit
    counter, randomly seeded each millisecond, follows the timestamp.
    """
    global _last_ms, _counter
    with _uuid_lock:
        if ms is None:
            # A clock stepped backwards must not reorder ids: stay on the last millisecond.
            ms = max(time.time_ns() // 1_000_000, _last_ms)
        if ms > _last_ms:
            _last_ms, _counter = ms, _seed_counter()
            counter = _counter
        elif ms == _last_ms:
            _counter += 1
            if _counter >= _COUNTER_LIMIT:
                _last_ms, _counter = ms + 1, _seed_counter()
                ms = _last_ms
            counter = _counter
        else:
            # An earlier time keeps its own timestamp; random bits keep it unique.
            counter = _seed_counter()
    value = (
        (ms & 0xFFFF_FFFF_FFFF) << 80
        | 0x7 << 76
        | (counter >> 30) << 64
        | 0b10 << 62
        | (counter & 0x3FFF_FFFF) << 32
        | _random_bits(32)
    )
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def uuid7_ms(value: str) -> int:
    """The Unix-millisecond timestamp inside a UUIDv7 string."""
    return int(value.replace("-", "")[:12], 16)


def _after_fork_in_child() -> None:
    global _uuid_lock, _counter, _random_bits
    # Another thread may have held the lock at fork time; the child would wait forever.
    _uuid_lock = threading.Lock()
    # Parent and child would otherwise make the same ids from here on.
    _random_bits = random.Random(os.urandom(32)).getrandbits
    _counter += 1 + _random_bits(32)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


@functools.lru_cache(maxsize=1024)
def _second_prefix(seconds: int) -> str:
    # Events come in bursts within a few seconds; strftime() is most of the cost.
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))


def format_timestamp(ms: int) -> str:
    """RFC 3339 in UTC with milliseconds and `Z`, e.g. `2026-11-24T21:00:00.123Z`."""
    seconds, millis = divmod(ms, 1000)
    return f"{_second_prefix(seconds)}.{millis:03d}Z"


_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)  # noqa: UP017 (3.11 has datetime.UTC; keep it plain)


def timestamp_ms(value: datetime | str) -> int:
    """Unix milliseconds of a datetime (naive means local time, as in Python) or RFC 3339 text."""
    if isinstance(value, str):
        moment = datetime.fromisoformat(value)
        if moment.tzinfo is None:
            raise ValueError("timestamp needs a UTC offset (e.g. Z or +01:00)")
    elif isinstance(value, datetime):
        moment = value if value.tzinfo is not None else value.astimezone()
    else:
        raise TypeError("timestamp must be a datetime or an RFC 3339 string")
    delta = moment - _EPOCH
    ms = (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000
    if not 0 <= ms < MAX_TIMESTAMP_MS:
        # Before 1970 strftime() would write a year without its zero padding ("1-01-02T…"),
        # and the daemon refuses such times anyway.
        raise ValueError("timestamp must be between 1970 and 9999 in UTC")
    return ms


def check_properties(properties: dict[str, Any]) -> None:
    """Refuse properties the daemon would refuse, before they are encoded.

    TypeError for a property name that is not a string (JSON would turn `{1: "a", "1": "b"}`
    into an object with the key "1" twice, which readers resolve differently), ValueError
    past MAX_DEPTH or MAX_KEYS (counted as the daemon counts them: the keys of every
    object, nested ones included), LineTooLarge when they cannot fit in
    MAX_PROPERTIES_BYTES whatever their values.
    """
    # The root's opening bracket; each container adds what its items take at the least.
    _check_node(properties, 1, 0, 1)


def _check_node(node: Any, depth: int, keys: int, least: int) -> tuple[int, int]:
    """`keys` and `least` (a lower bound of the encoded size) with `node` counted in."""
    if depth > MAX_DEPTH:
        raise ValueError(f"properties are nested deeper than {MAX_DEPTH} levels")
    is_object = isinstance(node, dict)
    if is_object:
        keys += len(node)
        if keys > MAX_KEYS:  # before the size, as the daemon checks them
            raise ValueError(f"properties have more than {MAX_KEYS} keys")
    # Each item takes two bytes at the least: one of its own, and a comma or the closing
    # bracket after it. Counted before any item is looked at, so that a list of millions
    # is refused at once instead of walked and encoded on the writer thread, which would
    # hold the GIL from the agent for tens of milliseconds.
    least += 2 * len(node)
    if least > MAX_PROPERTIES_BYTES:
        raise LineTooLarge(f"properties cannot fit in {MAX_PROPERTIES_BYTES} bytes encoded")
    if is_object:
        for key in node:
            if not isinstance(key, str):
                raise TypeError("property names must be strings")
            least += len(key) + 3  # its quotes and the colon
        children = node.values()
    else:
        children = node
    for child in children:
        if type(child) is str:
            least += len(child) + 1  # its quotes, less the byte counted above
        elif isinstance(child, (dict, list, tuple)):
            keys, least = _check_node(child, depth + 1, keys, least)
    if least > MAX_PROPERTIES_BYTES:
        raise LineTooLarge(f"properties cannot fit in {MAX_PROPERTIES_BYTES} bytes encoded")
    return keys, least


def check_name(field: str, value: object, limit: int) -> str:
    """`value` if it is a 1..limit character string without control characters."""
    if not isinstance(value, str):
        raise TypeError(f"{field} must be a string")
    if not 1 <= len(value) <= limit or _CONTROL.search(value):
        raise ValueError(f"{field} must be 1-{limit} characters without control characters")
    return value


def check_uuid(value: object) -> str:
    """`value` in canonical lower-case form if it is a UUID string."""
    if not isinstance(value, str):
        raise TypeError("uuid must be a string")
    lowered = value.lower()
    if not _CANONICAL_UUID.fullmatch(lowered):
        raise ValueError("uuid must look like 01935c1e-7b2a-7c3d-8e4f-0123456789ab")
    return lowered


def check_hex_id(field: str, value: object, digits: int) -> str:
    """`value` in lower case if it is a W3C trace or span id: `digits` hex digits, not all 0."""
    if not isinstance(value, str):
        raise TypeError(f"{field} must be a string")
    lowered = value.lower()
    if not _HEX_ID[digits].fullmatch(lowered) or not lowered.strip("0"):
        raise ValueError(f"{field} must be {digits} hex digits, not all zero")
    return lowered


def encode_event(
    event: str,
    properties: dict[str, Any] | None = None,
    *,
    timestamp: datetime | str | None = None,
    uuid: str | None = None,
    agent: str | None = None,
    now_ms: int | None = None,
    trace_id: str | None = None,
    span_id: str | None = None,
    parent_span_id: str | None = None,
    local_only: bool = False,
) -> bytes:
    """One NDJSON line, newline included; raises ValueError or TypeError for a bad event.

    `now_ms` is when the event happened (default: now); the uuid is made from it, so a
    line that is sent twice carries one uuid and the daemon keeps it once. The trace fields
    are set by spans: `trace_id` 32 hex digits, `span_id` and `parent_span_id` 16.
    `local_only` asks the daemon to keep the event for the user and never upload it.
    """
    # Built from parts so that the size of the properties alone is known, as the daemon
    # measures it. UTF-8 strictly: a lone surrogate raises here instead of reaching the
    # daemon as junk.
    parts = [b'{"event":', _checked_name("event", event, MAX_EVENT_NAME)]
    if properties is not None:
        if not isinstance(properties, dict):
            raise TypeError("properties must be a dict")
        check_properties(properties)
        body = _encode_json(properties).encode("utf-8")
        if len(body) > MAX_PROPERTIES_BYTES:
            raise LineTooLarge(
                f"properties are {len(body)} bytes encoded; the limit is {MAX_PROPERTIES_BYTES}"
            )
        parts += (b',"properties":', body)
    if now_ms is None:
        now_ms = time.time_ns() // 1_000_000
    stamp = format_timestamp(now_ms if timestamp is None else timestamp_ms(timestamp))
    uuid = uuid7(now_ms) if uuid is None else check_uuid(uuid)
    parts.append(f',"timestamp":"{stamp}","uuid":"{uuid}"'.encode())
    if agent is not None:
        parts += (b',"agent":', _checked_name("agent", agent, MAX_AGENT_NAME))
    if trace_id is not None or span_id is not None or parent_span_id is not None:
        for field, value, digits in (
            ("trace_id", trace_id, 32),
            ("span_id", span_id, 16),
            ("parent_span_id", parent_span_id, 16),
        ):
            if value is not None:
                hex_id = check_hex_id(field, value, digits)
                parts += (b',"', field.encode(), b'":"', hex_id.encode(), b'"')
    if local_only:
        parts.append(b',"local_only":true')
    parts.append(b"}\n")
    line = b"".join(parts)
    if len(line) > MAX_LINE_BYTES:
        raise LineTooLarge(f"event is {len(line)} bytes encoded; the limit is {MAX_LINE_BYTES}")
    return line


@functools.lru_cache(maxsize=1024)
def _checked_name(field: str, name: str, limit: int) -> bytes:
    # Event and agent names repeat: check and encode each once (a bad one raises, and
    # lru_cache keeps no entry for it).
    return _encode_json(check_name(field, name, limit)).encode("utf-8")


def encode_client_drops(counts: dict[str, int], agent: str | None) -> bytes:
    """The line that reports events an agent lost before the daemon could take them.

    `{"client_drops": {"<reason>": <count>, ...}, "agent": "<name>"}`: counts since the last
    such line handed over; the daemon counts them as `dropped_by_reason.client_<reason>`.
    """
    body: dict[str, Any] = {"client_drops": counts}
    if agent:
        body["agent"] = agent
    return _encode_json(body).encode("utf-8") + b"\n"
