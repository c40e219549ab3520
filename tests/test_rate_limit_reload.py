"""New upload rate rules (a reload) apply to the events already waiting too: `off` or a
looser rule lets them go now, a tighter one spreads them out, a smaller backlog keeps
what is past it local for good; the reload says what became of them, and the stored
events still add up."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from tests.conftest import DaemonFactory
from tests.daemon_process import DaemonProcess
from tests.fakes.http_backend import FakeHttpBackend
from tests.fakes.upload_helpers import flush_json, post_events
from tests.test_rate_shaping import stamps, write_config
from tests.test_ratelimit import most_in_any_window


@pytest.fixture
def backend() -> Iterator[FakeHttpBackend]:
    fake = FakeHttpBackend().start()
    yield fake
    fake.stop()


def uploading(daemon_factory: DaemonFactory, backend: FakeHttpBackend, toml: str) -> DaemonProcess:
    daemon = daemon_factory(
        {
            "AGENT_TELEMETRY_MODE": "upload",
            "TELEMETRY_ENDPOINT": backend.url,
            "TELEMETRY_API_KEY": backend.api_key,
        },
        start=False,
    )
    write_config(daemon, toml)
    return daemon.start()


def reload_with(daemon: DaemonProcess, toml: str) -> dict[str, object]:
    write_config(daemon, toml)
    return dict(json.loads(daemon.cli("reload", "--json").stdout))


def adds_up(status: dict[str, object]) -> bool:
    buffer = status["buffer"]
    assert isinstance(buffer, dict)
    parts = ("sent", "pending_upload", "local_only", "rate_limited", "quarantined")
    return bool(buffer["events"] == sum(buffer[part] for part in parts))


def test_turning_the_limit_off_lets_what_waits_go_in_the_next_flush(
    daemon_factory: DaemonFactory, backend: FakeHttpBackend
) -> None:
    daemon = uploading(daemon_factory, backend, 'rate_limit = "5/min"\n')
    uuids = post_events(daemon, 20, agent="planner")
    assert daemon.status()["rate_limit"]["events"] == 15

    reply = reload_with(daemon, 'rate_limit = "off"\n')
    assert (
        "the 15 events waiting for the rate limit were placed again under the new rules:"
        " 15 may go now, 0 still wait"
    ) in reply["notes"]
    status = daemon.status()
    assert status["rate_limit"]["events"] == 0 and status["rate_limit"]["why"] is None

    report = flush_json(daemon)
    assert (report["events_sent"], report["waiting"]["events"]) == (20, 0)
    assert sorted(backend.stored) == sorted(uuids)


def test_a_looser_rule_lets_what_it_allows_go_now(
    daemon_factory: DaemonFactory, backend: FakeHttpBackend
) -> None:
    daemon = uploading(daemon_factory, backend, 'rate_limit = "5/min"\n')
    post_events(daemon, 20, agent="planner")
    post_events(daemon, 20, agent="reviewer")
    reload_with(daemon, 'rate_limit = "30/min"\n')
    # 20 of each in the last minute: within 30, so nothing waits any more.
    assert daemon.status()["rate_limit"]["events"] == 0
    assert flush_json(daemon)["events_sent"] == 40


def test_a_tighter_rule_spreads_what_waits_and_a_smaller_backlog_keeps_the_rest_local(
    daemon_factory: DaemonFactory, backend: FakeHttpBackend
) -> None:
    daemon = uploading(daemon_factory, backend, 'rate_limit = "10/min"\n')
    post_events(daemon, 40, agent="planner")  # 10 go now, 30 wait
    reply = reload_with(daemon, 'rate_limit = "2/min"\nrate_limit_backlog = 12\n')
    assert (
        "the 30 events waiting for the rate limit were placed again under the new rules:"
        " 0 may go now, 12 still wait, 18 past the backlog cap are kept local for good"
    ) in reply["notes"]

    status = daemon.status()
    assert status["rate_limit"]["events"] == 12
    assert status["buffer"]["rate_limited"] == 18
    assert status["rate_limit"]["rate_limited_by_source"] == {"planner": 18}
    assert adds_up(status)
    # What still waits goes two a minute, oldest first: the new rule, not the old one.
    waiting = [e for _, e in stamps(daemon) if e is not None]
    assert waiting == sorted(waiting)
    assert most_in_any_window(waiting, 60_000) == 2
    # The next flush sends the 10 the old rule had let go, and no waiting event.
    assert flush_json(daemon)["events_sent"] == 10


def test_a_restart_with_other_rules_places_what_waits_under_them(
    daemon_factory: DaemonFactory, backend: FakeHttpBackend
) -> None:
    """The config edited while the daemon was down: the rules it starts with decide."""
    daemon = uploading(daemon_factory, backend, 'rate_limit = "5/min"\n')
    post_events(daemon, 20, agent="planner")
    assert daemon.stop() == 0
    write_config(daemon, 'rate_limit = "off"\n')
    # Read from the file meanwhile: they wait for the rules they were placed under.
    why = daemon.status()["rate_limit"]["why"]
    assert why.startswith("15 events wait for the upload rate limit")
    assert why.endswith(
        "they were placed under 5/min, and the daemon places them again under off when it starts"
    )
    daemon.start()
    assert daemon.status()["rate_limit"]["events"] == 0
    assert flush_json(daemon)["events_sent"] == 20

    # Started again under the same rules, nothing is placed again: what waits keeps its time.
    write_config(daemon, 'rate_limit = "5/min"\n')
    assert daemon.stop() == 0
    daemon.start()
    post_events(daemon, 5, agent="planner")  # the window still holds the 20 sent: all wait
    before = stamps(daemon)
    assert daemon.status()["rate_limit"]["events"] == 5
    assert daemon.stop() == 0
    daemon.start()
    assert stamps(daemon) == before
    assert "rate_limit_replanned" not in daemon.log().split("daemon_stopped")[-1]
