"""An agent repeating a mistake as fast as it can does not fill the log: a line for each of
the first hundred, then one a minute at most, whatever the rate; the counts are all kept."""

from __future__ import annotations

import json
import math
import time

from agent_telemetryd.log_budget import LogBudget
from tests.conftest import DaemonFactory
from tests.test_daemon_ingest import send_lines
from tests.test_version_upgrades import newer_shim_line


def test_the_first_hundred_each_get_a_line_then_one_a_minute() -> None:
    now = [0.0]
    budget = LogBudget(clock=lambda: now[0])
    assert all(budget.allows() for _ in range(100))
    allowed = []
    for second in range(180):  # three minutes at 1,000 a second
        now[0] = float(second)
        allowed.append(sum(budget.allows() for _ in range(1000)))
    # One line as the minute opens, none in between: 3 lines for 180,000 occurrences.
    assert [s for s, count in enumerate(allowed) if count] == [0, 60, 120]
    assert max(allowed) == 1
    assert budget.seen == 100 + 180 * 1000  # every occurrence counted, logged or not


def test_occurrences_met_at_once_count_each_and_share_a_line() -> None:
    now = [0.0]
    budget = LogBudget(first=1, clock=lambda: now[0])
    assert budget.allows(500)  # the first of them: a line
    assert budget.allows(500)  # past the first: the minute's line
    assert not budget.allows(500)
    now[0] = 61.0
    assert budget.allows(10) and not budget.allows(1)
    assert budget.seen == 1511


def test_a_flood_of_bad_lines_leaves_a_bounded_log(daemon_factory: DaemonFactory) -> None:
    daemon = daemon_factory({"AGENT_TELEMETRY_RATE_LIMIT": "off"})
    started = time.monotonic()
    bad = b'{"event": ""}\n' * 300_000
    send_lines(daemon.ingest_socket, bad + b'{"event": "still.taken"}\n')
    deadline = time.monotonic() + 120
    while daemon.api_status()["counters"]["received"] < 300_001:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    status = daemon.api_status()
    assert (status["counters"]["rejected"], status["buffer"]["events"]) == (300_000, 1)
    assert daemon.stop() == 0
    minutes = math.ceil((time.monotonic() - started) / 60)

    lines = [json.loads(line) for line in daemon.log().splitlines() if line.strip()]
    rejected = [line for line in lines if line["event"] == "event_rejected"]
    # The first hundred, then a line a minute: before, a line every thousandth (400 here).
    assert 100 < len(rejected) <= 100 + minutes
    assert rejected[-1]["rejected_so_far"] > 100
    assert {line["reason"] for line in rejected} == {
        "field 'event' must be 1-200 characters, got 0"
    }


def test_a_newer_shim_sending_every_line_leaves_a_bounded_log(
    daemon_factory: DaemonFactory,
) -> None:
    """Every line of a shim newer than the daemon carries a field it does not know: all are
    kept (local), and the log says why once, then once a minute, not every thousandth."""
    daemon = daemon_factory({"AGENT_TELEMETRY_RATE_LIMIT": "off"})
    started = time.monotonic()
    lines = b"".join(newer_shim_line("newer.step", sample_rate=1) for _ in range(20_000))
    send_lines(daemon.ingest_socket, lines)
    deadline = time.monotonic() + 120
    while daemon.api_status()["counters"]["kept_local_unknown_fields"] < 20_000:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert daemon.stop() == 0
    minutes = math.ceil((time.monotonic() - started) / 60)

    logged = [json.loads(line) for line in daemon.log().splitlines() if line.strip()]
    noted = [line for line in logged if line["event"] == "event_kept_local_unknown_fields"]
    assert 1 <= len(noted) <= 1 + minutes  # every thousandth: 20 lines
