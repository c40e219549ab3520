"""One OTLP/HTTP request body → wire events, refusals and resources. No I/O."""

from __future__ import annotations

import orjson
from google.protobuf.message import DecodeError

from agent_telemetryd.otlp.decoded import Decoded
from agent_telemetryd.otlp.json_input import JsonShapeError
from agent_telemetryd.otlp.signals import Signal

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
ENCODINGS = (PROTOBUF, JSON)


class UndecodableError(ValueError):
    """A body that is not an OTLP request at all (answered 400); fixed text, no content."""


def decode(signal: Signal, body: bytes, encoding: str) -> Decoded:
    """Decode a request body in `encoding` (PROTOBUF or JSON) and map its items to events."""
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
    decoded = Decoded(refused=refused)
    signal.to_events(request, decoded)
    return decoded
