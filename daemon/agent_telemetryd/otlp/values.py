"""OTLP values as the daemon's JSON: attributes, ids and times. No I/O.

An attribute keeps its dotted name (`gen_ai.usage.input_tokens`) as one property key; its
value becomes the JSON it stands for. Bytes, which JSON has no form for, become base64
text, as OpenTelemetry's own non-OTLP exporters write them.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable
from typing import Any

import orjson
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from agent_telemetry._wire import format_timestamp

NANOS_PER_MS = 1_000_000
TRACE_ID_BYTES = 16
SPAN_ID_BYTES = 8
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
MAX_AGENT_CHARS = 100


def any_value(value: AnyValue) -> Any:
    """The JSON value of an AnyValue; None when no value is set."""
    # The commonest kinds first, read directly (see `attributes`).
    text = value.string_value
    if text:
        return text
    number = value.int_value
    if number:
        return number
    kind = value.WhichOneof("value")
    return getattr(value, kind) if kind in _SCALARS else _composite(value, kind)


def _composite(value: AnyValue, kind: str | None) -> Any:
    """The JSON value of an AnyValue of `kind` (its WhichOneof), when not a scalar."""
    if kind == "array_value":
        return list(map(any_value, value.array_value.values))
    if kind == "kvlist_value":
        return attributes(value.kvlist_value.values)
    if kind == "bytes_value":
        return base64.b64encode(value.bytes_value).decode("ascii")
    return None  # unset, or a kind newer than this daemon: the key stays, not its value


_SCALARS = frozenset({"string_value", "int_value", "double_value", "bool_value"})


def attributes(pairs: Iterable[KeyValue], into: dict[str, Any] | None = None) -> dict[str, Any]:
    """Attributes as one object (added to `into` when given, whose keys they override); a
    key given twice keeps its last value."""
    found: dict[str, Any] = {} if into is None else into
    read_attributes(pairs, found, {})
    return found


def read_attributes(
    pairs: Iterable[KeyValue], into: dict[str, Any], known: dict[bytes, tuple[str, Any]]
) -> bool:
    """Reads `pairs` into `into` (a key given twice keeps its last value) and says whether
    a value holds an object, or an array an array: only then is there more to check below
    the top level (content names, keys, depth). `known` remembers pairs read before (the
    same for all the items of a request).
    """
    # Scalars inline: this runs for every attribute of every item, and a call per value
    # was a third of the cost of mapping a span. Strings and integers, most attributes,
    # are read directly: a oneof member that is not set reads as "" or 0, so a value that
    # is not empty can only be what it looks like, and one read costs less than asking
    # `WhichOneof` (a lookup by name in the runtime) and then reading.
    nested = False
    scalars = _SCALARS
    for pair in pairs:
        value = pair.value
        text = value.string_value
        if text:
            into[pair.key] = text
            continue
        number = value.int_value
        if number:
            into[pair.key] = number
            continue
        # The other kinds cost a lookup by name and a read or two more, an array a dozen
        # (each element a message). Their pairs repeat across a request's items (a
        # temperature, a flag, finish reasons): each distinct one is read once, and found
        # again by its bytes, which the runtime gives for less than one such read.
        identity = pair.SerializeToString()
        seen = known.get(identity)
        if seen is not None:
            key, found = seen
            into[key] = found.copy() if type(found) is list else found
            continue
        key = pair.key
        kind = value.WhichOneof("value")
        found = getattr(value, kind) if kind in scalars else _composite(value, kind)
        into[key] = found
        if type(found) is list:
            if set(map(type, found)).isdisjoint(_CONTAINERS):
                known[identity] = (key, found.copy())  # a copy: each event its own list
            else:
                nested = True
        elif type(found) is dict:
            nested = True
        else:
            known[identity] = (key, found)
    return nested


_CONTAINERS = frozenset({dict, list})


def text(value: Any) -> str:
    """A value as a string, so that the scrubber, which reads strings, sees all of it."""
    if isinstance(value, str):
        return value
    try:
        return orjson.dumps(value).decode()
    except TypeError:
        return str(value)


def hex_id(raw: bytes, size: int) -> str | None:
    """The hex form of a trace or span id; None for an absent (empty) one.

    Raises ValueError for an id of the wrong size or all zeros, which W3C and OTLP both
    call invalid.
    """
    if not raw:
        return None
    if len(raw) != size or not any(raw):
        raise ValueError
    return raw.hex()


def duration_ms(nanos: int) -> float:
    """Nanoseconds as milliseconds to the microsecond: `round(nanos / 1e6, 3)`, the same
    float, at a seventh of its cost (`round` to digits goes through decimal text)."""
    # Away from a tie (half a microsecond, where round's answer depends on the division's
    # own rounding) the float's error, under 2**-53 of it, cannot carry it over the next
    # half microsecond while it is below ~11 days; there, rounding the integer is exact.
    rest = nanos % 1000
    if rest != 500 and nanos < _EXACT_BELOW_NS:
        return ((nanos + 500) // 1000) / 1000
    return round(nanos / NANOS_PER_MS, 3)


_EXACT_BELOW_NS = 10**15


def time_ms(nanos: int) -> int | None:
    """Unix nanoseconds as milliseconds; None for 0 (unset). A uint64 of nanoseconds ends
    in the year 2554, well inside what the wire's timestamps allow."""
    return nanos // NANOS_PER_MS if nanos else None


def rfc3339(ms: int) -> str:
    return format_timestamp(ms)


def agent_name(value: Any) -> str | None:
    """`service.name` as the daemon's source name: text without control characters, cut to
    the length the wire allows, so a long or odd name never costs the items their place."""
    if value is None:
        return None
    name = _CONTROL.sub("", value if isinstance(value, str) else text(value))[:MAX_AGENT_CHARS]
    return name or None
