"""What leaves the machine after the user said stop, cleared or forgot: nothing pending
survives a mode without upload, `clear` ends a flush, `forget` keeps track of every id
the backend may hold until it confirms erasure. The real daemon, fake backends on loopback.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator

import pytest

from tests.daemon_process import CLI
from tests.fakes.http_backend import FakeHttpBackend
from tests.fakes.posthog_backend import FakePostHog
from tests.fakes.upload_helpers import Factory, flush_json, post_events, posthog_env


@pytest.fixture
def posthog() -> Iterator[FakePostHog]:
    backend = FakePostHog().start()
    yield backend
    backend.stop()


@pytest.fixture
def backend() -> Iterator[FakeHttpBackend]:
    server = FakeHttpBackend().start()
    yield server
    server.stop()


def _http_env(url: str, **extra: str) -> dict[str, str]:
    return {
        "AGENT_TELEMETRY_RATE_LIMIT": "off",
        "AGENT_TELEMETRY_SENDER": "http",
        "TELEMETRY_ENDPOINT": url,
        "TELEMETRY_API_KEY": "secret-ingest-key",
        **extra,
    }


def test_disable_from_a_ci_shell_with_the_daemon_down_still_revokes_pending(
    daemon_factory: Factory, posthog: FakePostHog
) -> None:
    daemon = daemon_factory(posthog_env(posthog.url))
    daemon.cli("enable")
    post_events(daemon, 4)
    daemon.stop()
    # In this shell CI caps the mode at local, so "before" looks like local already;
    # the pending events must become local-only all the same.
    ci_shell = {**daemon.env, "CI": "true"}
    subprocess.run([CLI, "disable"], env=ci_shell, check=True, capture_output=True)
    daemon.start()
    daemon.cli("enable")
    report = flush_json(daemon)
    assert report["events_sent"] == 0
    assert posthog.batch_requests() == []
    assert daemon.status()["buffer"]["local_only"] == 4


def test_a_daemon_whose_environment_has_ci_no_stays_local_and_status_says_why(
    daemon_factory: Factory,
) -> None:
    # CI=no is still a CI: only 0 and false say it is not one.
    daemon = daemon_factory({"CI": "no"})
    assert daemon.cli("enable").stdout.splitlines()[0] == "Mode: local"
    status = daemon.status()
    assert (status["mode"], status["mode_source"]) == ("local", "CI")


def test_a_daemon_started_without_upload_consent_keeps_nothing_pending(
    daemon_factory: Factory, posthog: FakePostHog
) -> None:
    daemon = daemon_factory(posthog_env(posthog.url))
    daemon.cli("enable")
    post_events(daemon, 5)
    daemon.stop()
    # Restarted with DO_NOT_TRACK: the five received under upload are ineligible for good,
    # even once DO_NOT_TRACK is gone again.
    daemon.env["DO_NOT_TRACK"] = "1"
    daemon.start()
    assert daemon.status()["buffer"]["pending_upload"] == 0
    daemon.stop()
    del daemon.env["DO_NOT_TRACK"]
    daemon.start()
    assert flush_json(daemon)["events_sent"] == 0
    assert posthog.batch_requests() == []
    assert "upload_consent_withdrawn" in daemon.log()


def test_clear_during_a_flush_stops_it_before_its_next_request(
    daemon_factory: Factory, posthog: FakePostHog
) -> None:
    posthog.delay = 0.2
    daemon = daemon_factory(posthog_env(posthog.url, AGENT_TELEMETRY_BATCH_SIZE="10"))
    daemon.cli("enable")
    post_events(daemon, 300)
    flushing = subprocess.Popen(
        [CLI, "flush", "--json"], env=daemon.env, stdout=subprocess.PIPE, text=True
    )
    posthog.wait_for(lambda: len(posthog.batch_requests()) >= 2)
    daemon.cli("clear", "--yes")
    after_clear = len(posthog.batch_requests())
    report = json.loads(flushing.communicate(timeout=30)[0])
    # At most the request that was in flight when clear came; nothing read before it.
    assert len(posthog.batch_requests()) <= after_clear + 1
    assert report["stopped"] and "cleared" in report["stopped"]
    assert daemon.status()["buffer"]["events"] == 0


def test_forget_erases_ids_whose_sent_rows_were_already_cleared(
    daemon_factory: Factory, backend: FakeHttpBackend
) -> None:
    daemon = daemon_factory(_http_env(backend.url, AGENT_TELEMETRY_MODE="upload"))
    post_events(daemon, 3)
    assert flush_json(daemon)["events_sent"] == 3
    first_id = daemon.status()["anonymous_id"]
    daemon.cli("reset-id")
    daemon.cli("clear", "--yes")
    out = json.loads(daemon.cli("forget", "--yes", "--json").stdout)
    assert out["erased_ids"] == [first_id]
    assert backend.deleted_ids == [first_id] and backend.stored == {}
    # Confirmed: a second forget has nothing left to ask for.
    again = json.loads(daemon.cli("forget", "--yes", "--json").stdout)
    assert again["erased_ids"] == [] and again["erasure"]["requested"] is False
    assert "nothing was ever uploaded" in again["erasure"]["message"]


def test_forget_where_the_backend_is_not_configured_keeps_the_ids_for_later(
    daemon_factory: Factory, backend: FakeHttpBackend
) -> None:
    daemon = daemon_factory(_http_env(backend.url, AGENT_TELEMETRY_MODE="upload"))
    post_events(daemon, 3)
    flush_json(daemon)
    sent_id = daemon.status()["anonymous_id"]
    daemon.stop()
    plain_shell = {
        k: v
        for k, v in daemon.env.items()
        if k not in ("AGENT_TELEMETRY_SENDER", "TELEMETRY_ENDPOINT", "TELEMETRY_API_KEY")
    }
    result = subprocess.run(
        [CLI, "forget", "--yes", "--json"], env=plain_shell, capture_output=True, text=True
    )
    out = json.loads(result.stdout)
    assert out["deleted"] == 3 and out["erasure"]["requested"] is False
    assert sent_id in out["erasure"]["message"] and "run forget again" in out["erasure"]["message"]
    assert backend.deleted_ids == []
    # With the backend configured again, forget still knows what to erase.
    out = json.loads(daemon.cli("forget", "--yes", "--json").stdout)
    assert out["erased_ids"] == [sent_id] and backend.deleted_ids == [sent_id]


def test_enable_warns_about_the_daemons_backend_not_this_shells(daemon_factory: Factory) -> None:
    daemon = daemon_factory({"AGENT_TELEMETRY_SENDER": "file"})
    shell = {k: v for k, v in daemon.env.items() if k != "AGENT_TELEMETRY_SENDER"}
    out = subprocess.run([CLI, "enable"], env=shell, capture_output=True, text=True).stdout
    assert "Mode: upload" in out and "No backend is configured" not in out
    none_daemon = daemon_factory({})
    out = none_daemon.cli("enable").stdout
    assert "No backend is configured" in out


def test_forget_reaches_an_id_whose_batch_was_committed_but_whose_answer_was_lost(
    daemon_factory: Factory, backend: FakeHttpBackend
) -> None:
    backend.lose_answers = True  # stores the batch, then drops the connection
    daemon = daemon_factory(
        _http_env(backend.url, AGENT_TELEMETRY_MODE="upload", AGENT_TELEMETRY_RETRY_BASE="0.05")
    )
    post_events(daemon, 3)
    report = flush_json(daemon, check=False)
    assert report["events_sent"] == 0 and report["error"]  # no answer: nothing marked sent
    sent_id = daemon.status()["anonymous_id"]
    assert {event["anonymous_id"] for event in backend.stored.values()} == {sent_id}
    out = json.loads(daemon.cli("forget", "--yes", "--json").stdout)
    assert out["erased_ids"] == [sent_id]
    assert backend.deleted_ids == [sent_id] and backend.stored == {}
