"""Retry delays: exponential backoff with jitter. Pure.

The backend's own Retry-After is read where its answer is (`senders.transport`)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Backoff:
    base: float = 1.0
    factor: float = 2.0
    cap: float = 60.0

    def __post_init__(self) -> None:
        if self.base <= 0 or self.factor < 1 or self.cap < self.base:
            raise ValueError("backoff needs base > 0, factor >= 1 and cap >= base")

    def delay(self, attempt: int, rand: float) -> float:
        """Seconds to wait before retry number `attempt` (1, 2, ...), `rand` in [0, 1).

        "Equal jitter": half the exponential step is fixed, half random, so many
        daemons that failed together do not retry together, yet none retries at once.
        """
        if attempt < 1:
            raise ValueError("attempt counts from 1")
        step = min(self.cap, self.base * self.factor ** (attempt - 1))
        return step / 2 + step / 2 * rand
