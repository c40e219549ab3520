"""An event sent again (a client retrying a request whose answer it lost, a spool file
read again after a crash) is stored once, so it takes no second place under the upload
rate limit: not in its source's window, and not in the backlog, where a phantom place
would keep a later, real event local for good."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from agent_telemetryd.config_values import RateRule
from agent_telemetryd.ratelimit import UploadRateLimiter
from tests.conftest import DaemonFactory
from tests.daemon_process import DaemonProcess
from tests.fakes.http_backend import FakeHttpBackend
from tests.fakes.upload_helpers import post_events
from tests.test_daemon_ingest import post_events as post_json_events
from tests.test_rate_shaping import uploading_daemon

T0 = 1_800_000_000_000


@pytest.fixture
def backend() -> Iterator[FakeHttpBackend]:
    fake = FakeHttpBackend().start()
    yield fake
    fake.stop()


def post_again(daemon: DaemonProcess, uuids: list[str], agent: str) -> dict[str, object]:
    """The same events, uuids and all, as a client's retry sends them."""
    events = [{"event": "agent.run.completed", "uuid": u, "agent": agent} for u in uuids]
    status, answer = post_json_events(daemon.http_url(), events)
    assert status == 202, answer
    return answer


def test_a_retried_event_keeps_its_place_and_takes_no_other() -> None:
    limiter = UploadRateLimiter([RateRule(2, 60.0)], backlog=3)
    first = [limiter("a", T0, f"u{i}") for i in range(4)]
    assert first == [T0, T0, T0 + 60_000, T0 + 60_000]
    # The whole request again: each gets its own time back, nothing new is placed.
    assert [limiter("a", T0 + 5, f"u{i}") for i in range(4)] == first
    assert limiter.waiting("a", T0 + 5) == 2
    # So the backlog of three still has room for one new event.
    assert limiter("a", T0 + 10, "u4") == T0 + 120_000
    assert limiter("a", T0 + 10, "u5") is None


def test_a_clients_retry_does_not_make_later_events_rate_limited(
    daemon_factory: DaemonFactory, backend: FakeHttpBackend
) -> None:
    daemon = uploading_daemon(
        daemon_factory, backend, 'rate_limit = "5/min"\nrate_limit_backlog = 20\n'
    )
    uuids = post_events(daemon, 10, agent="planner")  # 5 go at once, 5 wait
    assert post_again(daemon, uuids, "planner")["duplicates"] == 10
    post_events(daemon, 10, agent="planner")  # 15 wait now: within the backlog of 20

    status = daemon.status()
    assert status["buffer"]["rate_limited"] == 0
    assert status["rate_limit"]["events"] == 15
    assert status["buffer"]["pending_upload"] == 20

    # After a restart, the limiter read back from the buffer knows those uuids too.
    assert daemon.stop() == 0
    daemon.start()
    assert post_again(daemon, uuids, "planner")["duplicates"] == 10
    post_events(daemon, 5, agent="planner")  # 20 wait: the backlog is full, not over
    after = daemon.status()
    assert after["buffer"]["rate_limited"] == 0
    assert after["rate_limit"]["events"] == 20


def test_clearing_the_buffer_does_not_open_a_fresh_burst(
    daemon_factory: DaemonFactory, backend: FakeHttpBackend
) -> None:
    """What went to the backend this minute still counts after `clear`; what waited was
    deleted with the buffer, so its places are free."""
    daemon = uploading_daemon(
        daemon_factory, backend, 'rate_limit = "5/min"\nrate_limit_backlog = 10\n'
    )
    post_events(daemon, 15, agent="planner")  # 5 go, 10 wait: the backlog is full
    assert json.loads(daemon.cli("flush", "--json").stdout)["events_sent"] == 5
    daemon.cli("clear", "--yes")

    post_events(daemon, 12, agent="planner")
    status = daemon.status()
    # The minute's five went already: all twelve wait (ten: the backlog, now free again).
    assert status["rate_limit"]["events"] == 10 and status["buffer"]["rate_limited"] == 2
    assert json.loads(daemon.cli("flush", "--json").stdout)["events_sent"] == 0
    assert len(backend.stored) == 5
