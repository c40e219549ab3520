"""A daemon fed ever new property names keeps its memory: what it remembers of names it
has seen is bounded in count and in size, however long each name is."""

from __future__ import annotations

import json
import time

from tests.conftest import DaemonFactory
from tests.test_daemon_ingest import send_lines
from tests.test_http_hostile import peak_rss_mb

EVENTS = 6_000
KEY_CHARS = 30_000  # a name may be as long as an event's 32 KiB properties allow
# Idle the daemon is under 50 MiB; remembering each of these names held ~180 MiB more.
PEAK_RSS_LIMIT_MB = 150


def test_long_distinct_property_names_are_not_remembered(daemon_factory: DaemonFactory) -> None:
    daemon = daemon_factory({"AGENT_TELEMETRY_RATE_LIMIT": "off"})
    lines = (
        json.dumps({"event": "e", "properties": {f"{n:06}" + "k" * KEY_CHARS: n}}).encode()
        for n in range(EVENTS)
    )
    send_lines(daemon.ingest_socket, b"\n".join(lines) + b"\n")
    deadline = time.monotonic() + 120
    while daemon.api_status()["buffer"]["events"] < EVENTS:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert daemon.api_status()["counters"]["rejected"] == 0
    assert peak_rss_mb(daemon) < PEAK_RSS_LIMIT_MB
