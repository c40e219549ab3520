"""Token buckets per ingest key and per anonymous id. Pure: the clock is passed in.

Buckets live in this process only; behind several replicas each one enforces its own share.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field

from agent_telemetry_server.config import Rate


@dataclass
class _Bucket:
    tokens: float
    updated: float


@dataclass
class RateLimiter:
    """`take(key)` → 0 when allowed, else the whole seconds to wait (for Retry-After).

    A limiter without a rate (configured `off`) allows everything.
    """

    rate: Rate | None
    clock: Callable[[], float]
    max_buckets: int = 100_000
    _buckets: dict[Hashable, _Bucket] = field(default_factory=dict)

    def take(self, key: Hashable) -> int:
        if self.rate is None:
            return 0
        now = self.clock()
        capacity = float(self.rate.count)
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self.max_buckets:
                self._forget_full(now)
            bucket = self._buckets[key] = _Bucket(capacity, now)
        else:
            elapsed = max(0.0, now - bucket.updated)
            bucket.tokens = min(capacity, bucket.tokens + elapsed * self.rate.per_second)
            bucket.updated = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0
        return max(1, math.ceil((1.0 - bucket.tokens) / self.rate.per_second))

    def _forget_full(self, now: float) -> None:
        """Drop buckets that have refilled: a full bucket is the same as no bucket."""
        assert self.rate is not None
        refill = self.rate.per_seconds
        stale = [k for k, b in self._buckets.items() if now - b.updated >= refill]
        for key in stale:
            del self._buckets[key]
        if len(self._buckets) >= self.max_buckets:
            # Everyone is active: forget the oldest half rather than grow without bound.
            by_age = sorted(self._buckets, key=lambda k: self._buckets[k].updated)
            for key in by_age[: len(by_age) // 2]:
                del self._buckets[key]

    def __len__(self) -> int:
        return len(self._buckets)
