"""`reload` and SIGHUP on the real daemon: the new config is applied without a restart,
without dropping a connection or an event; a broken one keeps the running settings."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator

import pytest

from tests.conftest import DaemonFactory
from tests.daemon_process import CLI, DaemonProcess
from tests.fakes.http_backend import FakeHttpBackend
from tests.fakes.upload_helpers import flush_json, post_events
from tests.test_daemon_ingest import post_events as post_json


@pytest.fixture
def backend() -> Iterator[FakeHttpBackend]:
    fake = FakeHttpBackend().start()
    yield fake
    fake.stop()


def write_config(daemon: DaemonProcess, text: str) -> None:
    config = daemon.home / "config.toml"
    config.write_text(text)
    config.chmod(0o600)


def backend_config(backend: FakeHttpBackend) -> str:
    return f'[http]\nendpoint = "{backend.url}"\napi_key = "{backend.api_key}"\n'


def uploading_daemon(daemon_factory: DaemonFactory) -> DaemonProcess:
    """Upload consent given, but no backend configured yet: the sender is none."""
    return daemon_factory(
        {
            "AGENT_TELEMETRY_MODE": "upload",
            "AGENT_TELEMETRY_RATE_LIMIT": "off",
            "AGENT_TELEMETRY_RETRY_BASE": "0.05",
        }
    )


def send_line(connection: socket.socket, name: str) -> None:
    connection.sendall(json.dumps({"event": name, "agent": "long-lived"}).encode() + b"\n")


def wait_until(predicate, timeout: float = 20.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError("timed out")


def stored_events(daemon: DaemonProcess) -> list[str]:
    return [row["event"] for row in daemon.export()]


@pytest.mark.parametrize("trigger", ["command", "SIGHUP"])
def test_reload_switches_the_sender_and_the_next_flush_reaches_it(
    daemon_factory: DaemonFactory, backend: FakeHttpBackend, trigger: str
) -> None:
    daemon = uploading_daemon(daemon_factory)
    pid = daemon.status()["pid"]
    connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    connection.connect(str(daemon.ingest_socket))
    try:
        send_line(connection, "before.reload")
        post_events(daemon, 5)
        wait_until(lambda: len(stored_events(daemon)) == 6)
        skipped = flush_json(daemon)
        assert skipped["skipped"].startswith("sender is none") and not backend.stored

        write_config(daemon, "batch_size = 2\n" + backend_config(backend))
        if trigger == "command":
            reply = json.loads(daemon.cli("reload", "--json").stdout)
            assert reply["ok"] and reply["needs_restart"] == []
            changed = {c["setting"]: c for c in reply["changed"]}
            assert (changed["sender"]["from"], changed["sender"]["to"]) == ("none", "http")
            assert changed["http_api_key"] == {
                "setting": "http_api_key",
                "from": "(unset)",
                "to": "(set)",  # never the key itself
                "applied": True,
                "takes_effect": "the next flush",
            }
            assert backend.api_key not in json.dumps(reply)
            assert sorted(reply["applied"]) == [
                "batch_size",
                "http_api_key",
                "http_endpoint",
                "sender",
            ]
        else:
            os.kill(pid, signal.SIGHUP)
            wait_until(lambda: daemon.status()["sender"] == "http")
        status = daemon.status()
        assert (status["pid"], status["running"]) == (pid, True)  # no restart
        assert status["upload"]["batch_size"] == 2

        # The ingest connection opened before the reload keeps delivering.
        send_line(connection, "after.reload")
        wait_until(lambda: "after.reload" in stored_events(daemon))
        report = flush_json(daemon)
        assert report["exit_code"] == 0 and report["events_sent"] == 7
        assert report["batches"] == 4  # the new batch size too
        assert sorted(e["event"] for e in backend.stored.values()) == sorted(
            ["before.reload", "after.reload"] + ["agent.run.completed"] * 5
        )
    finally:
        connection.close()
    assert daemon.proc is not None and daemon.proc.poll() is None
    assert backend.api_key not in daemon.log()


@pytest.mark.parametrize("change", ["backend removed", "unknown setting"])
def test_a_reload_that_takes_the_backend_out_or_holds_uploads_stops_the_flush_under_way(
    daemon_factory: DaemonFactory, backend: FakeHttpBackend, change: str
) -> None:
    """A flush of 40 events in batches of 10; while its second request is in flight the
    config is reloaded without the backend, or with a setting this version does not know
    (uploads held). The flush stops there: the backend gets no third request, the other
    events stay pending, and the next flush sends nothing."""
    daemon = uploading_daemon(daemon_factory)
    write_config(daemon, "batch_size = 10\n" + backend_config(backend))
    daemon.cli("reload")
    post_events(daemon, 40)
    backend.hold_after = 1  # the first batch is answered; the second waits in flight
    flushing = subprocess.Popen(
        [CLI, "flush", "--json"], env=daemon.env, stdout=subprocess.PIPE, text=True
    )
    assert backend.arrived.wait(15)
    if change == "backend removed":
        write_config(daemon, "batch_size = 10\n")
        why, skipped = "changed the backend", "sender is none"
    else:
        write_config(daemon, "batch_size = 10\nsome_future_setting = 1\n" + backend_config(backend))
        why = skipped = "the config has settings this version does not know"
    reply = json.loads(daemon.cli("reload", "--json").stdout)
    assert reply["ok"]
    backend.release.set()
    out, _ = flushing.communicate(timeout=30)
    report = json.loads(out)
    assert report["stopped"] is not None and why in report["stopped"]
    assert report["events_sent"] == 10
    # The second request was cut short in flight; the backend had read it (20 stored).
    backend.wait_for(lambda: len(backend.snapshot()) == 2)
    assert len(backend.stored) == 20

    again = flush_json(daemon)
    assert again["skipped"].startswith(skipped)
    assert len(backend.snapshot()) == 2
    assert daemon.status()["buffer"]["pending_upload"] == 30


def test_a_reload_reads_a_consent_record_edited_by_hand(
    daemon_factory: DaemonFactory, backend: FakeHttpBackend
) -> None:
    """`enable`, then consent.json edited by hand to `local` (the config unchanged) and
    `reload`: the daemon's mode is `local` at once, its pending events become local-only,
    and `flush` sends nothing."""
    daemon = daemon_factory(
        {"AGENT_TELEMETRY_RATE_LIMIT": "off", "AGENT_TELEMETRY_RETRY_BASE": "0.05"}
    )
    write_config(daemon, backend_config(backend))
    daemon.cli("reload")
    daemon.cli("enable")
    post_events(daemon, 5)
    consent = daemon.home / "consent.json"
    record = json.loads(consent.read_text())
    consent.write_text(json.dumps({**record, "mode": "local"}))

    reply = json.loads(daemon.cli("reload", "--json").stdout)
    assert reply["ok"]
    assert daemon.status()["mode"] == "local"
    report = flush_json(daemon)
    assert report["events_sent"] == 0 and report["skipped"].startswith("mode is local")
    assert backend.snapshot() == [] and backend.stored == {}
    assert {row["upload"] for row in daemon.export()} == {"local"}


def test_a_broken_config_keeps_the_running_settings_and_says_why(
    daemon_factory: DaemonFactory, backend: FakeHttpBackend
) -> None:
    daemon = uploading_daemon(daemon_factory)
    write_config(daemon, backend_config(backend))
    daemon.cli("reload")
    write_config(daemon, 'upload_intervall = "1m"\nbatch_size = 0\n' + backend_config(backend))
    result = daemon.cli("reload", check=False)
    assert result.returncode == 1
    assert result.stdout.splitlines() == [
        "Not reloaded: the config has 2 problems; the running settings are kept.",
        f"{daemon.home / 'config.toml'}: upload_intervall: unknown setting; "
        "did you mean upload_interval?",
        f"{daemon.home / 'config.toml'}: batch_size: must be greater than zero",
    ]
    assert result.stderr == ""  # nothing that contradicts "the running settings are kept"
    status = daemon.status()
    assert status["sender"] == "http" and status["upload"]["batch_size"] == 100

    os.kill(status["pid"], signal.SIGHUP)
    wait_until(lambda: daemon.log().count("reload_refused") >= 2)
    assert "did you mean upload_interval?" in daemon.log()
    post_events(daemon, 3)
    assert flush_json(daemon)["events_sent"] == 3  # still the running sender


def reloads_by_sighup(daemon: DaemonProcess) -> int:
    """The reloads the daemon's log reports done on a SIGHUP (one JSON object a line)."""
    lines = [json.loads(line) for line in daemon.log().splitlines() if line.startswith("{")]
    return sum(
        1 for line in lines if (line.get("event"), line.get("via")) == ("config_reloaded", "SIGHUP")
    )


def hangup_pending_at_birth() -> None:
    """Runs in the daemon's process before it starts: SIGHUP blocked and one sent, so one
    is waiting when the daemon's first line runs, as one sent at the moment of a start."""
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGHUP})
    os.kill(os.getpid(), signal.SIGHUP)


def test_sighups_sent_as_the_daemon_starts_are_a_reload_not_its_end(
    daemon_factory: DaemonFactory,
) -> None:
    daemon = daemon_factory({"AGENT_TELEMETRY_RATE_LIMIT": "off"}, start=False)
    daemon.preexec_fn = hangup_pending_at_birth
    daemon.start(wait=False)
    assert daemon.proc is not None
    # More while it starts, until it answers.
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not daemon.api_socket.exists():
        assert daemon.proc.poll() is None, f"ended by SIGHUP:\n{daemon.log()}"
        os.kill(daemon.proc.pid, signal.SIGHUP)
        time.sleep(0.005)
    daemon.wait_ready()
    os.kill(daemon.proc.pid, signal.SIGHUP)

    assert post_json(daemon.http_url(), [{"event": "after.sighups"}])[0] == 202
    wait_until(lambda: stored_events(daemon) == ["after.sighups"])
    # The one waiting at the start was not lost: it was a reload, as each later one.
    wait_until(lambda: reloads_by_sighup(daemon) >= 1)
    assert daemon.proc.poll() is None
    assert daemon.stop() == 0


def test_reload_says_what_needs_a_restart_and_applies_the_rest(
    daemon_factory: DaemonFactory,
) -> None:
    daemon = uploading_daemon(daemon_factory)
    before = daemon.status()
    write_config(
        daemon,
        'upload_interval = "10m"\n'
        'http_host = "127.0.0.2"\n'
        '[privacy]\nallow_events = ["kept"]\n'
        "[store]\nretention_days = 7\n",
    )
    reply = json.loads(daemon.cli("reload", "--json").stdout)
    assert reply["applied"] == ["allow_events", "upload_interval"]
    assert reply["needs_restart"] == ["http_host", "retention_days"]
    why = {c["setting"]: c.get("needs_restart_because") for c in reply["changed"]}
    assert why["http_host"] == "the listeners are opened at start"
    # Once applied, a setting is no change; what waits for a restart is still said.
    assert daemon.cli("reload").stdout.splitlines()[0] == (
        "Reloaded: applied nothing new; restart the daemon for http_host, retention_days."
    )

    status = daemon.status()
    assert status["paths"]["http"] == before["paths"]["http"]  # still the running listener
    assert status["upload"]["interval_seconds"] == 600
    post_events(daemon, 2, name="kept")
    _, answer = post_json(status["paths"]["http"], [{"event": "dropped.now"}] * 3)
    assert answer["accepted"] == 0  # the allowlist dropped them, counted
    counters = daemon.status()["counters"]
    assert counters["dropped_by_reason"]["not_allowlisted"] == 3
    assert stored_events(daemon).count("kept") == 2
