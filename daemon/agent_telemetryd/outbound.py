"""What leaves the machine: pending events and the batches they are sent in. Pure values.

A leaf module: the store reads pending rows into `Outbound`, the uploader groups them
into `OutboundBatch`, and the senders turn a batch into a request. Data flows one way
(store → upload → senders), so the type they share lives below all three.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

# Per-event overhead of the envelope around the stored properties (names, uuid, times,
# the privacy flags), used to keep a request under the byte budget without encoding twice.
EVENT_OVERHEAD_BYTES = 400


@dataclass(frozen=True, slots=True)
class Outbound:
    """One pending event as the senders see it; `properties` is the stored JSON text."""

    id: int
    uuid: str
    event: str
    ts_ms: int
    received_ms: int
    properties: str
    agent: str
    anonymous_id: str

    @property
    def approx_bytes(self) -> int:
        return len(self.properties) + len(self.event) + len(self.agent) + EVENT_OVERHEAD_BYTES


@dataclass(frozen=True, slots=True)
class OutboundBatch:
    """Events of one anonymous id, in arrival order: one request to the backend."""

    anonymous_id: str
    events: tuple[Outbound, ...]

    def __len__(self) -> int:
        return len(self.events)

    @property
    def batch_id(self) -> str:
        return batch_id(event.uuid for event in self.events)


def batch_id(uuids: Iterable[str]) -> str:
    """The same for the same set of events however often it is re-sent (Idempotency-Key)."""
    digest = hashlib.sha256()
    for value in sorted(uuids):
        digest.update(value.encode())
        digest.update(b"\n")
    return digest.hexdigest()
