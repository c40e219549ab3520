"""One OTLP request body → checked events, refusals and resources. No I/O."""

from __future__ import annotations

import time
from typing import Any

import orjson
from google.protobuf.message import DecodeError

from agent_telemetryd.events import Limits
from agent_telemetryd.otlp.decoded import Decoded
from agent_telemetryd.otlp.event_checks import EventChecks
from agent_telemetryd.otlp.json_input import JsonShapeError
from agent_telemetryd.otlp.signals import Signal
from agent_telemetryd.privacy.content import ContentMask

# Items taken from one request, as on the other HTTP routes: 8 MiB of tiny log records is
# ~140,000 of them, seconds of mapping and a daemon ~100 MB larger for good. Exporters send
# batches of 512 by default; past the cap the rest is refused, counted, and named in the
# answer's partial success.
MAX_ITEMS_PER_REQUEST = 10_000

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
ENCODINGS = (PROTOBUF, JSON)


class UndecodableError(ValueError):
    """A body that is not an OTLP request at all (answered 400); fixed text, no content."""


def decode(
    signal: Signal,
    body: bytes,
    encoding: str,
    checks: EventChecks | None = None,
    mask: ContentMask | None = None,
    received_ms: int | None = None,
) -> Decoded:
    """Decode a request body in `encoding` (PROTOBUF or JSON) and map its items to events
    checked by `checks` (by default, against the default limits), their content masked
    by `mask` when given. `received_ms` (default: now) is the time of an item with none."""
    if encoding == PROTOBUF:
        request = signal.request()
        try:
            request.ParseFromString(body)
        except (DecodeError, RecursionError, ValueError):
            raise UndecodableError(
                f"request body is not a binary {signal.request.DESCRIPTOR.name}"
            ) from None
        refused: list[str] = []
    elif encoding == JSON:
        try:
            document = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise UndecodableError("request body is not valid JSON") from None
        try:
            request, refused = signal.from_json(document)
        except JsonShapeError as error:
            raise UndecodableError(f"request body is not OTLP JSON: {error}") from None
        except Exception:  # a shape no rule foresaw: its message may quote the body
            raise UndecodableError("request body is not OTLP JSON") from None
    else:
        raise ValueError(f"unknown encoding {encoding!r}")
    cut = _cut_to_cap(signal, request)
    if cut:
        too_many = f"more than {MAX_ITEMS_PER_REQUEST:,} {signal.items} in one request"
        refused = [*refused, *[f"{too_many}; send smaller batches"] * cut]
    if received_ms is None:
        received_ms = time.time_ns() // 1_000_000
    decoded = Decoded(
        checks or EventChecks(Limits()), mask, refused=refused, received_ms=received_ms
    )
    signal.to_events(request, decoded)
    return decoded


def _cut_to_cap(signal: Signal, request: Any) -> int:
    """Cut `request` to its first MAX_ITEMS_PER_REQUEST items; returns how many were cut."""
    room, cut = MAX_ITEMS_PER_REQUEST, 0
    for items in signal.item_lists(request):
        count = len(items)
        if count > room:
            del items[room:]
            cut += count - room
        room -= min(room, count)
    return cut
