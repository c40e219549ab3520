"""`forget` after the sender changed: each backend an id was ever sent to is asked (or
named, when it cannot be), not whichever is configured when forget runs. The real daemon
and CLI, a custom backend and a PostHog double on loopback."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from tests.conftest import DaemonFactory
from tests.daemon_process import DaemonProcess
from tests.fakes.http_backend import FakeHttpBackend
from tests.fakes.posthog_backend import FakePostHog
from tests.fakes.upload_helpers import flush_json, post_events, posthog_env

HTTP_KEYS = ("TELEMETRY_ENDPOINT", "TELEMETRY_API_KEY")


@pytest.fixture
def backend() -> Iterator[FakeHttpBackend]:
    server = FakeHttpBackend().start()
    yield server
    server.stop()


@pytest.fixture
def posthog() -> Iterator[FakePostHog]:
    server = FakePostHog().start()
    yield server
    server.stop()


def _uploaded_to_http(daemon_factory: DaemonFactory, backend: FakeHttpBackend) -> DaemonProcess:
    daemon = daemon_factory(
        {
            "AGENT_TELEMETRY_RATE_LIMIT": "off",
            "AGENT_TELEMETRY_MODE": "upload",
            "TELEMETRY_ENDPOINT": backend.url,
            "TELEMETRY_API_KEY": "secret-ingest-key",
        }
    )
    post_events(daemon, 2)
    assert flush_json(daemon)["events_sent"] == 2
    daemon.stop()
    return daemon


def test_forget_erases_at_the_http_backend_after_a_switch_to_posthog(
    daemon_factory: DaemonFactory, backend: FakeHttpBackend, posthog: FakePostHog
) -> None:
    daemon = _uploaded_to_http(daemon_factory, backend)
    sent_id = daemon.status()["anonymous_id"]
    # PostHog is the sender now; the custom backend's endpoint and key are still set.
    daemon.env.update(posthog_env(posthog.url, AGENT_TELEMETRY_SENDER="posthog"))
    daemon.start()
    post_events(daemon, 1)
    assert flush_json(daemon)["events_sent"] == 1  # the same id, now at PostHog too

    forget = daemon.cli("forget", "--yes")
    assert backend.deleted_ids == [sent_id] and backend.stored == {}
    lines = forget.stdout.splitlines()
    assert f"Remote data at http {backend.url}: the backend erased the data of 1 id(s)." in lines
    (at_posthog,) = [line for line in lines if line.startswith("Remote data at posthog")]
    assert f"for anonymous id(s) {sent_id} in PostHog" in at_posthog

    # The custom backend confirmed and is not asked again; PostHog's part stays listed.
    again = json.loads(daemon.cli("forget", "--yes", "--json").stdout)
    assert [b["backend"] for b in again["erasure"]["backends"]] == [f"posthog {posthog.url}"]
    assert backend.deleted_ids == [sent_id]


def test_forget_names_a_backend_no_longer_configured_and_keeps_its_ids(
    daemon_factory: DaemonFactory, backend: FakeHttpBackend, posthog: FakePostHog
) -> None:
    daemon = _uploaded_to_http(daemon_factory, backend)
    sent_id = daemon.status()["anonymous_id"]
    custom = {key: daemon.env.pop(key) for key in HTTP_KEYS}
    daemon.env.update(posthog_env(posthog.url, AGENT_TELEMETRY_SENDER="posthog"))

    forget = daemon.cli("forget", "--yes")  # the daemon is down: the CLI asks itself
    assert backend.deleted_ids == [] and posthog.requests == []
    assert "PostHog" not in forget.stdout
    assert forget.stdout.splitlines()[-1] == (
        f"Remote data at http {backend.url}: it holds the data of anonymous id(s) {sent_id} "
        "and is no longer configured here, so no erasure request was sent: the team that "
        "runs it must delete that data there (or configure it again and run forget again)."
    )

    daemon.env.update(custom)  # configured again: the id was kept, and is erased now
    out = json.loads(daemon.cli("forget", "--yes", "--json").stdout)
    assert out["erased_ids"] == [sent_id] and backend.deleted_ids == [sent_id]
    assert out["erasure"]["backends"][0]["confirmed"] is True
