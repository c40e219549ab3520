"""From pending rows to request-sized batches, and halving a batch. Pure: no I/O."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TypeVar

from agent_telemetryd.outbound import Outbound, OutboundBatch

T = TypeVar("T")


def page_rows(batch_size: int) -> int:
    """Rows read from the buffer at a time: several batches, at most 5,000 rows.

    Only the cost of a read depends on it, never the batches (see `Batcher`), so the
    flush and `preview` page alike and memory holds one page whatever the backlog.
    """
    return max(batch_size, min(batch_size * 10, 5000))


class Batcher:
    """Rows in (in order, in pages of any size), request-sized batches out.

    A batch ends at `max_events` events, at about `max_bytes`, or where the anonymous id
    changes, never where a page ends: the flush and `preview` feed it the same rows and
    get the same batches whatever their pages. A batch never mixes anonymous ids: after
    `reset-id`, events kept under the old id are sent under it, never linked to the new
    one in one request. A single event larger than `max_bytes` still gets a batch of its
    own; the backend's 413 then decides its fate. The batch being filled is kept between
    calls, so `finish()` must be called once the rows run out.
    """

    def __init__(self, max_events: int, max_bytes: int) -> None:
        if max_events < 1 or max_bytes < 1:
            raise ValueError("max_events and max_bytes must be positive")
        self._max_events = max_events
        self._max_bytes = max_bytes
        self._current: list[Outbound] = []
        self._size = 0

    def add(self, rows: Iterable[Outbound]) -> list[OutboundBatch]:
        """Take the next rows; return the batches they completed (full ones at once)."""
        done: list[OutboundBatch] = []
        for row in rows:
            cost = row.approx_bytes
            current = self._current
            if current and (
                row.anonymous_id != current[0].anonymous_id or self._size + cost > self._max_bytes
            ):
                done.append(self._cut())
            self._current.append(row)
            self._size += cost
            if len(self._current) >= self._max_events:
                done.append(self._cut())
        return done

    def finish(self) -> list[OutboundBatch]:
        """The last batch, if rows are left after the last `add`."""
        return [self._cut()] if self._current else []

    def _cut(self) -> OutboundBatch:
        batch = OutboundBatch(self._current[0].anonymous_id, tuple(self._current))
        self._current, self._size = [], 0
        return batch


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
