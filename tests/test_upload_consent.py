"""Consent decides what leaves: default local, enable, disable mid-backlog, DO_NOT_TRACK.

The real daemon as a subprocess, a PostHog capture API double on loopback.
"""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from collections.abc import Iterator

import pytest

from tests.daemon_process import CLI, DaemonProcess
from tests.fakes.posthog_backend import FakePostHog
from tests.fakes.upload_helpers import Factory, flush_json, post_events, posthog_env, upload_states
from tests.shim_agents import run_agent
from tests.test_daemon_ingest import post_events as post_json_events
from tests.test_shim_node import NODE_SHIM
from tests.tools import required_tool


def wait_until_nothing_can_send(daemon: DaemonProcess) -> None:
    """No flush under way and none scheduled: from then on the daemon starts no request,
    and every request an earlier flush made was answered (so recorded) before it ended."""
    deadline = time.monotonic() + 20
    while True:
        status = daemon.status()
        if status["next_upload"] is None and not status["upload"]["flush_running"]:
            return
        assert time.monotonic() < deadline, status
        time.sleep(0.05)


@pytest.fixture
def posthog() -> Iterator[FakePostHog]:
    backend = FakePostHog().start()
    yield backend
    backend.stop()


def test_default_mode_sends_nothing_and_preview_says_so(
    daemon_factory: Factory, posthog: FakePostHog
) -> None:
    """In the default mode 500 events stay local: a flush makes no request at all."""
    daemon = daemon_factory(posthog_env(posthog.url))
    post_events(daemon, 500)
    report = flush_json(daemon)
    assert report["exit_code"] == 0
    assert report["events_sent"] == 0 and "mode is local" in report["skipped"]
    preview = json.loads(daemon.cli("preview", "--json").stdout)
    assert preview["sends"] is False and preview["requests"] == []
    assert "sends nothing" in preview["reason"]
    text = daemon.cli("preview").stdout
    assert text.startswith("Nothing would be sent: mode is local")
    wait_until_nothing_can_send(daemon)
    assert posthog.snapshot() == []
    assert daemon.status()["buffer"]["local_only"] == 500


def test_enable_uploads_exactly_the_events_received_after_it(
    daemon_factory: Factory, posthog: FakePostHog
) -> None:
    """250 events after `enable` arrive once each, in batches ≤ batch size, as PostHog
    wants them; the 40 from before `enable` never leave."""
    daemon = daemon_factory(posthog_env(posthog.url, AGENT_TELEMETRY_BATCH_SIZE="100"))
    before = post_events(daemon, 40, name="before.enable")
    daemon.cli("enable")
    after = post_events(daemon, 250)
    preview = json.loads(daemon.cli("preview", "--json", "--max-requests", "100").stdout)
    assert preview["sends"] is True and preview["pending"] == 250

    report = flush_json(daemon)
    assert (report["exit_code"], report["events_sent"], report["batches"]) == (0, 250, 3), (
        report,
        daemon.log()[-3000:],
    )

    requests = posthog.batch_requests()
    assert [len(r.body["batch"]) for r in requests] == [100, 100, 50]
    anonymous_id = daemon.status()["anonymous_id"]
    for request in requests:
        assert request.headers["Content-Encoding"] == "gzip"
        assert request.body["api_key"] == "phc_test_key"
        assert request.body["historical_migration"] is False
        assert request.body["sent_at"].endswith("Z")
        for event in request.body["batch"]:
            assert set(event) == {"event", "distinct_id", "properties", "timestamp", "uuid"}
            assert event["distinct_id"] == anonymous_id
            assert event["properties"]["$process_person_profile"] is False
            assert event["properties"]["$geoip_disable"] is True
            assert event["properties"]["$lib"] == "agent-telemetry"
            assert "$ip" not in event["properties"]
    sent = [event["uuid"] for event in posthog.accepted_events()]
    assert sent == after  # each once, in arrival order
    assert not set(before) & set(sent)

    # The preview showed exactly these bodies (sent_at and the redacted key aside).
    previewed = [e for r in preview["requests"] for e in r["body"]["batch"]]
    assert previewed == [e for r in requests for e in r.body["batch"]]

    states = upload_states(daemon)
    assert {states[u] for u in after} == {"sent"} and {states[u] for u in before} == {"local"}
    assert flush_json(daemon)["events_sent"] == 0
    assert len(posthog.batch_requests()) == 3


def test_disable_mid_backlog_stops_at_once_and_for_good(
    daemon_factory: Factory, posthog: FakePostHog
) -> None:
    """`disable` during a flush: no request after it; re-`enable` does not bring the
    backlog back."""
    posthog.delay = 0.15
    daemon = daemon_factory(posthog_env(posthog.url, AGENT_TELEMETRY_BATCH_SIZE="10"))
    daemon.cli("enable")
    uuids = post_events(daemon, 300)
    flushing = subprocess.Popen(
        [CLI, "flush", "--json"], env=daemon.env, stdout=subprocess.PIPE, text=True
    )
    posthog.wait_for(lambda: len(posthog.batch_requests()) >= 2)
    daemon.cli("disable")
    requests_at_disable = len(posthog.batch_requests())
    out, _ = flushing.communicate(timeout=30)
    report = json.loads(out)
    assert report["stopped"] and "turned off" in report["stopped"]
    assert flushing.returncode == 0  # not a backend failure
    wait_until_nothing_can_send(daemon)
    # A request the flush abandoned at `disable` was already written; the fake records it
    # after its 0.15 s answer delay. Four times that delay lets it land, so that a request
    # sent after `disable` would be counted too. (Late is never a false failure here: a
    # request that has not landed yet only makes the count smaller.)
    time.sleep(0.6)
    # The request in flight at `disable` may land after it; nothing is sent after that.
    assert len(posthog.batch_requests()) <= requests_at_disable + 1

    daemon.cli("enable")
    again = flush_json(daemon)
    assert again["events_sent"] == 0
    assert len(posthog.batch_requests()) <= requests_at_disable + 1
    states = upload_states(daemon)
    sent = {event["uuid"] for event in posthog.all_sent_events()}
    assert all(states[u] == "local" for u in uuids if u not in sent)
    assert sum(1 for u in uuids if states[u] == "local") >= 300 - 10 * (requests_at_disable + 1)


def test_do_not_track_wins_over_upload_in_config(
    daemon_factory: Factory, posthog: FakePostHog
) -> None:
    """DO_NOT_TRACK=1 with `mode = "upload"` in the config: nothing sent, status says why."""
    daemon = daemon_factory(posthog_env(posthog.url, DO_NOT_TRACK="1"), start=False)
    config = daemon.home / "config.toml"
    config.write_text('mode = "upload"\n')
    config.chmod(0o600)
    daemon.start()
    post_events(daemon, 50)
    report = flush_json(daemon)
    assert report["events_sent"] == 0 and "DO_NOT_TRACK" in report["skipped"]
    status = daemon.status()
    assert status["mode"] == "local" and status["mode_source"] == "DO_NOT_TRACK"
    assert "DO_NOT_TRACK" in status["mode_reason"]
    assert status["next_upload"] is None
    wait_until_nothing_can_send(daemon)
    assert posthog.snapshot() == []


def test_an_agent_run_with_do_not_track_keeps_its_events_local(
    daemon_factory: Factory, posthog: FakePostHog
) -> None:
    """DO_NOT_TRACK set where an agent runs, though not for the daemon: that agent's events
    are kept for the user and never sent; another agent's go as usual."""
    daemon = daemon_factory(posthog_env(posthog.url, AGENT_TELEMETRY_MODE="upload"))
    agent = """
        from agent_telemetry import flush, span, track
        for i in range(20):
            track("step", {"n": i})
        with span("run"):
            pass
        flush(10)
        """
    run_agent(daemon.home, agent, AGENT_TELEMETRY_AGENT="private", DO_NOT_TRACK="1")
    run_agent(daemon.home, agent, AGENT_TELEMETRY_AGENT="shared", DO_NOT_TRACK="0")
    # The Node shim reads it the same way.
    node = required_tool("nodejs", "node")
    node_agent = (
        "const t = require(process.argv[1]);"
        "t.track('node.step', {n: 1});"
        "t.span('node.run', {}, () => {});"
        "t.flush(10000);"
    )
    subprocess.run(
        [node, "-e", node_agent, str(NODE_SHIM / "index.js")],
        env={**daemon.env, "AGENT_TELEMETRY_AGENT": "private-node", "DO_NOT_TRACK": "true"},
        check=True,
        timeout=30,
    )
    # The same request over HTTP, and a value that is not a yes or no: named, not kept.
    events = [{"event": "http.step", "local_only": True}, {"event": "bad", "local_only": "1"}]
    status, answer = post_json_events(daemon.http_url(), events)
    assert status == 202
    assert answer["accepted"] == 1
    assert answer["rejected"] == [
        {"index": 1, "reason": "field 'local_only' must be true or false, not a string"}
    ]

    report = flush_json(daemon)
    assert report["events_sent"] == 21, report
    assert {(e["event"], e["properties"]["agent"]) for e in posthog.accepted_events()} == {
        ("step", "shared"),
        ("run", "shared"),
    }
    kept = {(row["event"], row["upload"]) for row in daemon.export()}
    assert kept == {
        ("step", "local"),
        ("run", "local"),
        ("node.step", "local"),
        ("node.run", "local"),
        ("http.step", "local"),
        ("step", "sent"),
        ("run", "sent"),
    }
    assert daemon.status()["buffer"]["pending_upload"] == 0

    # Spooled while the daemon is down, taken when it starts: still never sent.
    assert daemon.stop() == 0
    run_agent(daemon.home, agent, AGENT_TELEMETRY_AGENT="private", DO_NOT_TRACK="yes")
    assert list((daemon.home / "data" / "spool").iterdir())
    daemon.start()
    deadline = time.monotonic() + 20
    while len(rows := daemon.export()) < 66:
        assert time.monotonic() < deadline, len(rows)
        time.sleep(0.1)
    assert flush_json(daemon)["events_sent"] == 0
    assert sum(row["upload"] == "local" for row in rows) == 45


def test_remote_endpoint_must_be_https(daemon_factory: Factory) -> None:
    """Plain http to a non-loopback host is refused at startup with one clear line; other
    commands warn and count the sender as none."""
    daemon = daemon_factory(
        posthog_env("http://telemetry.example.com", AGENT_TELEMETRY_MODE="upload"), start=False
    )
    result = daemon.cli("status", "--json", check=False)
    assert result.returncode == 0 and json.loads(result.stdout)["sender"] == "none"
    assert "posthog.host: telemetry.example.com is not loopback; use https://" in result.stderr
    assert "Traceback" not in result.stderr
    daemon.start(wait=False)
    assert daemon.proc is not None and daemon.proc.wait(15) == 3
    assert "is not loopback; use https://" in daemon.log()


def test_reset_id_keeps_old_events_under_their_own_id(
    daemon_factory: Factory, posthog: FakePostHog
) -> None:
    """After reset-id, events kept before go out under the old id, never mixed with new."""
    daemon = daemon_factory(posthog_env(posthog.url))
    daemon.cli("enable")
    old_id = daemon.status()["anonymous_id"]
    old = post_events(daemon, 5)
    new_id = daemon.cli("reset-id").stdout.split()[-1]
    uuid.UUID(new_id)
    assert new_id != old_id and daemon.status()["anonymous_id"] == new_id
    new = post_events(daemon, 5)
    flush_json(daemon)
    by_request = [{e["distinct_id"] for e in r.body["batch"]} for r in posthog.batch_requests()]
    assert by_request == [{old_id}, {new_id}]
    owners = {e["uuid"]: e["distinct_id"] for e in posthog.accepted_events()}
    assert {owners[u] for u in old} == {old_id} and {owners[u] for u in new} == {new_id}
