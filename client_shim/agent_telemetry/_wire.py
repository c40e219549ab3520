"""The wire format agents send to `ingest.sock`: one definition, shared with the daemon.

One event is one compact JSON object on one line:
`{"event", "properties", "timestamp", "uuid", "agent"}` (DESIGN §5, docs/architecture.md).
"""

from __future__ import annotations

import functools
import json
import os
import random
import re
import threading
import time
from datetime import datetime, timezone
from typing import Any

MAX_EVENT_NAME = 200
MAX_AGENT_NAME = 100
# The daemon skips longer lines unread (DESIGN §6); dropping them here saves the trip.
MAX_LINE_BYTES = 64 * 1024

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_CANONICAL_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
# Built once: json.dumps() with non-default options makes a new encoder on every call.
# allow_nan=False because NaN/Infinity are not JSON and the daemon would reject the line.
_encode_json = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode

_COUNTER_BITS = 42  # 12 bits of rand_a + the top 30 bits of rand_b (RFC 9562 §6.2, method 1)
_COUNTER_LIMIT = 1 << _COUNTER_BITS
_uuid_lock = threading.Lock()
_last_ms = 0
_counter = 0
# Ids need uniqueness, not secrecy: a Mersenne Twister seeded from os.urandom() costs ~0.1 µs
# a call where os.urandom() costs a syscall. Reseeded in a forked child (see below).
_random_bits = random.Random(os.urandom(32)).getrandbits


class LineTooLarge(ValueError):
    """The encoded event is longer than the daemon accepts on one line."""


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
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


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


def encode_event(
    event: str,
    properties: dict[str, Any] | None = None,
    *,
    timestamp: datetime | str | None = None,
    uuid: str | None = None,
    agent: str | None = None,
    now_ms: int | None = None,
) -> bytes:
    """One NDJSON line, newline included; raises ValueError or TypeError for a bad event.

    `now_ms` is when the event happened (default: now); the uuid is made from it, so a
    line that is sent twice carries one uuid and the daemon keeps it once.
    """
    document: dict[str, Any] = {"event": check_name("event", event, MAX_EVENT_NAME)}
    if properties is not None:
        if not isinstance(properties, dict):
            raise TypeError("properties must be a dict")
        document["properties"] = properties
    if now_ms is None:
        now_ms = time.time_ns() // 1_000_000
    document["timestamp"] = format_timestamp(
        now_ms if timestamp is None else timestamp_ms(timestamp)
    )
    document["uuid"] = uuid7(now_ms) if uuid is None else check_uuid(uuid)
    if agent is not None:
        document["agent"] = check_name("agent", agent, MAX_AGENT_NAME)
    # UTF-8 strictly: a lone surrogate raises here instead of reaching the daemon as junk.
    line = (_encode_json(document) + "\n").encode("utf-8")
    if len(line) > MAX_LINE_BYTES:
        raise LineTooLarge(f"event is {len(line)} bytes encoded; the limit is {MAX_LINE_BYTES}")
    return line
