"""A runaway agent against a full buffer or a full disk: every event counted, the log told
rarely."""

from __future__ import annotations

import json
import socket
import time

from tests.conftest import DaemonFactory, mounted_tmpfs
from tests.test_store_failures import _fill_until_refused, _started_on

LINES = 6000


def _runaway(path: str) -> None:
    """6,000 events on ingest.sock in 300 writes, as an agent in a loop sends them."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.connect(path)
        for _ in range(LINES // 20):
            sock.sendall(b'{"event": "runaway.loop"}\n' * 20)
            time.sleep(0.005)  # pacing only, so the refusals span many group commits


def _log_events(text: str, name: str) -> list[dict[str, object]]:
    found = []
    for line in text.splitlines():
        if line.startswith("{") and json.loads(line).get("event") == name:
            found.append(json.loads(line))
    return found


def test_a_full_buffer_counts_every_refusal_and_logs_it_rarely(
    daemon_factory: DaemonFactory,
) -> None:
    """A refusal was logged at every group commit (~35 lines a second for as long as the
    agent runs); now the first is logged at once, then a line a minute at most, while
    status counts each refused event."""
    daemon = daemon_factory(
        {"AGENT_TELEMETRY_MAX_EVENTS": "10", "AGENT_TELEMETRY_RATE_LIMIT": "off"}
    )
    _runaway(str(daemon.ingest_socket))
    deadline = time.monotonic() + 60
    counters = daemon.status()["counters"]
    while counters["received"] < LINES:
        assert time.monotonic() < deadline, "the lines were never counted"
        time.sleep(0.05)
        counters = daemon.status()["counters"]
    assert counters["dropped_by_reason"] == {"buffer_full": LINES - 10}
    assert daemon.stop() == 0
    lines = _log_events(daemon.log(), "buffer_full_events_refused")
    # One line at once; a second only if sending took the machine over a minute.
    assert 1 <= len(lines) <= 2, len(lines)
    assert lines[0]["refused"] >= 1


def test_a_full_disk_counts_every_lost_event_and_logs_it_rarely(
    daemon_factory: DaemonFactory,
) -> None:
    """On a disk full to the last byte every group commit fails: that was an error line
    each (~25 a second under a runaway agent); now one at once, then a line a minute at
    most, while status counts each lost event as `write_error`."""
    with mounted_tmpfs("1m") as disk:
        daemon = _started_on(daemon_factory, disk)
        assert _fill_until_refused(daemon.http_url())[-1] == 503, "the disk never filled"
        before = daemon.status()["counters"]
        _runaway(str(daemon.ingest_socket))
        deadline = time.monotonic() + 60
        counters = daemon.status()["counters"]
        while counters["received"] < before["received"] + LINES:
            assert time.monotonic() < deadline, "the lines were never counted"
            time.sleep(0.05)
            counters = daemon.status()["counters"]
        lost = counters["dropped_by_reason"]["write_error"]
        assert lost == before["dropped_by_reason"].get("write_error", 0) + LINES
        assert counters["received"] == counters["stored"] + counters["rejected"] + lost
        assert daemon.stop() == 0
        lines = _log_events(daemon.log(), "buffer_write_failed")
        assert 1 <= len(lines) <= 2, len(lines)
