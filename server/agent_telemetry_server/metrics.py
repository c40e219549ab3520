"""Prometheus metrics of one server process, with `prometheus_client`.

Each app has its own registry rather than the library's global one, so several apps in
one process (tests) never count into each other. Behind several `serve` replicas each
process exposes its own figures; Prometheus sums them.

No content, ever: label values come from fixed sets only — route *patterns* (never a
path, which can hold an anonymous id), HTTP status codes, outcomes and limit scopes.
Never an event name, agent, anonymous id or key: those are unbounded (one time series
each) and some are personal.
"""

from __future__ import annotations

import asyncpg
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
)

PREFIX = "agent_telemetry_server"
CONTENT_TYPE = CONTENT_TYPE_LATEST
EVENT_OUTCOMES = ("accepted", "duplicates", "rejected")
RATE_LIMIT_SCOPES = ("key", "anonymous_id")
# From a cached read (1 ms) to the statement timeout (10 s) and beyond.
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            f"{PREFIX}_requests",
            "HTTP requests answered, by route pattern and status.",
            ["route", "status"],
            registry=r,
        )
        self.request_seconds = Histogram(
            f"{PREFIX}_request_duration_seconds",
            "Time from request to answer, by route pattern.",
            ["route"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.in_progress = Gauge(
            f"{PREFIX}_requests_in_progress", "Requests being handled now.", registry=r
        )
        self.events = Counter(
            f"{PREFIX}_events", "Events received in batches, by outcome.", ["outcome"], registry=r
        )
        self.batches = Counter(
            f"{PREFIX}_batches",
            "Batches answered 200: stored, or replayed for a repeated Idempotency-Key.",
            ["result"],
            registry=r,
        )
        self.rate_limited = Counter(
            f"{PREFIX}_rate_limited", "Requests refused with 429, by scope.", ["scope"], registry=r
        )
        self.db_unavailable = Counter(
            f"{PREFIX}_db_unavailable", "Requests answered 503 for the database.", registry=r
        )
        self.retention_deleted = Counter(
            f"{PREFIX}_retention_deleted", "Raw events removed by retention.", registry=r
        )
        self.pool_size = Gauge(f"{PREFIX}_pool_size", "Open database connections.", registry=r)
        self.pool_idle = Gauge(f"{PREFIX}_pool_idle", "Idle database connections.", registry=r)
        self.pool_max = Gauge(f"{PREFIX}_pool_max", "The pool's connection limit.", registry=r)
        # process_cpu_seconds_total, resident memory, open file descriptors, start time.
        ProcessCollector(registry=r)
        # Every fixed label value from the start, so a rate over a fresh series works.
        for outcome in EVENT_OUTCOMES:
            self.events.labels(outcome)
        for result in ("stored", "replayed"):
            self.batches.labels(result)
        for scope in RATE_LIMIT_SCOPES:
            self.rate_limited.labels(scope)

    def watch_pool(self, pool: asyncpg.Pool) -> None:
        """Read the pool's state at each scrape."""
        self.pool_size.set_function(lambda: float(pool.get_size()))
        self.pool_idle.set_function(lambda: float(pool.get_idle_size()))
        self.pool_max.set_function(lambda: float(pool.get_max_size()))

    def render(self) -> bytes:
        return generate_latest(self.registry)
