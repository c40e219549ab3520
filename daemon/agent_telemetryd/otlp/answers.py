"""The bodies of OTLP/HTTP answers, in the encoding the request came in. No I/O.

Success is an `Export*ServiceResponse`, with `partial_success` (how many items were
refused, and why) only when some were: the spec wants it unset otherwise. A failure is a
`google.rpc.Status` whose message says what was wrong.
"""

from __future__ import annotations

from collections import Counter

import orjson
from google.protobuf import json_format
from google.protobuf.message import Message
from google.rpc.status_pb2 import Status

from agent_telemetryd.otlp.decode import JSON
from agent_telemetryd.otlp.signals import Signal

# Enough kinds of reason to act on, without an answer as long as the payload.
MAX_REASONS_TOLD = 5


def export_answer(signal: Signal, refused: list[str], items: int, encoding: str) -> bytes:
    response = signal.response()
    if refused:
        partial = response.partial_success  # type: ignore[attr-defined]
        setattr(partial, signal.rejected_field, len(refused))
        partial.error_message = refusal_summary(signal, refused, items)
    return encode(response, encoding)


def status_answer(message: str, encoding: str) -> bytes:
    return encode(Status(message=message), encoding)


def refusal_summary(signal: Signal, refused: list[str], items: int) -> str:
    """`2 of 5 spans rejected: span has no name (1); …`, most frequent reason first."""
    counts = Counter(refused).most_common()
    told = "; ".join(f"{reason} ({count})" for reason, count in counts[:MAX_REASONS_TOLD])
    more = f"; and {len(counts) - MAX_REASONS_TOLD} more reasons" if len(counts) > 5 else ""
    return f"{len(refused)} of {items} {signal.items} rejected: {told}{more}"


def encode(message: Message, encoding: str) -> bytes:
    if encoding == JSON:
        return orjson.dumps(json_format.MessageToDict(message))
    return message.SerializeToString()
