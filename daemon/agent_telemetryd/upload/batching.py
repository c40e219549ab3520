"""From pending rows to request-sized batches, and halving a batch. Pure: no I/O."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")

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


def make_batches(rows: Sequence[Outbound], max_events: int, max_bytes: int) -> list[OutboundBatch]:
    """Cut rows (in order) into batches of at most `max_events` and about `max_bytes`.

    A batch never mixes anonymous ids: after `reset-id`, events kept under the old id are
    sent under it, never linked to the new one in one request. A single event larger than
    `max_bytes` still gets a batch of its own; the backend's 413 then decides its fate.
    """
    if max_events < 1 or max_bytes < 1:
        raise ValueError("max_events and max_bytes must be positive")
    batches: list[OutboundBatch] = []
    current: list[Outbound] = []
    size = 0
    for row in rows:
        cost = row.approx_bytes
        if current and (
            row.anonymous_id != current[0].anonymous_id
            or len(current) >= max_events
            or size + cost > max_bytes
        ):
            batches.append(OutboundBatch(current[0].anonymous_id, tuple(current)))
            current, size = [], 0
        current.append(row)
        size += cost
    if current:
        batches.append(OutboundBatch(current[0].anonymous_id, tuple(current)))
    return batches


def halves(items: Sequence[T]) -> tuple[list[T], list[T]]:
    """Split in two, first half not smaller; a batch of one cannot be split."""
    if len(items) < 2:
        raise ValueError("a batch of one cannot be split")
    middle = (len(items) + 1) // 2
    return list(items[:middle]), list(items[middle:])


def split_batch(batch: OutboundBatch) -> tuple[OutboundBatch, OutboundBatch]:
    left, right = halves(batch.events)
    return OutboundBatch(batch.anonymous_id, tuple(left)), OutboundBatch(
        batch.anonymous_id, tuple(right)
    )
