"""The schedule: with a short interval, events go out with no command at all."""

from __future__ import annotations

from tests.fakes.posthog_backend import FakePostHog
from tests.fakes.upload_helpers import Factory, post_events, posthog_env


def test_scheduled_upload_needs_no_command(daemon_factory: Factory) -> None:
    posthog = FakePostHog().start()
    try:
        daemon = daemon_factory(posthog_env(posthog.url, AGENT_TELEMETRY_UPLOAD_INTERVAL="1s"))
        assert daemon.status()["next_upload"] is None  # local mode: nothing scheduled
        daemon.cli("enable")
        assert daemon.status()["next_upload"] is not None
        uuids = post_events(daemon, 20)
        posthog.wait_for(lambda: len(posthog.accepted_events()) == 20, timeout=10)
        assert [e["uuid"] for e in posthog.accepted_events()] == uuids
        status = daemon.status()
        assert status["last_upload"] is not None
        assert status["upload"]["last_flush"]["trigger"] == "schedule"
        assert status["buffer"]["pending_upload"] == 0
        # Mode local pauses the schedule.
        daemon.cli("disable")
        assert daemon.status()["next_upload"] is None
        # The last upload is read from the buffer, so it shows with the daemon down too.
        assert daemon.stop() == 0
        assert daemon.status()["last_upload"] == status["last_upload"]
    finally:
        posthog.stop()
