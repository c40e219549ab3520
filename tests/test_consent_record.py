"""A consent record that cannot be read: the user's choice is never silently reset to
collecting. It counts as `off`, `status` and `doctor` say why and how to fix it, and the
next `mode` keeps the broken file instead of writing over it. The real CLI and daemon."""

from __future__ import annotations

import json
import urllib.request

from tests.conftest import DaemonFactory


def test_an_unreadable_record_is_off_named_by_status_and_failed_by_doctor(
    daemon_factory: DaemonFactory,
) -> None:
    daemon = daemon_factory(start=False)
    daemon.cli("mode", "off")
    record = daemon.home / "consent.json"
    record.write_text("{garbage\n")

    status = daemon.status()
    assert (status["mode"], status["mode_source"]) == ("off", "unreadable")
    assert status["mode_reason"].startswith(f"consent record unreadable: {record} is not valid")
    assert "using off until a mode is set again" in status["mode_reason"]
    text = daemon.cli("status").stdout
    assert "mode:         off  (unreadable: consent record unreadable:" in text

    doctor = daemon.cli("doctor", "--json", check=False)
    assert doctor.returncode == 1
    (consent,) = [c for c in json.loads(doctor.stdout)["checks"] if c["name"] == "consent"]
    assert consent["verdict"] == "fail"
    assert "consent record unreadable" in consent["detail"]
    assert "agent-telemetry mode off|local|upload" in consent["fix"]

    # The next choice keeps the broken file, under a name it gives.
    out = daemon.cli("mode", "local").stdout
    (kept,) = daemon.home.glob("consent.json.unreadable-*")
    assert f"The consent record could not be read; it is kept as {kept}" in out
    assert "Mode: local" in out
    assert kept.read_text() == "{garbage\n"
    history = json.loads(record.read_text())["history"]
    assert [(h["mode"], h["unreadable_record_kept_as"]) for h in history] == [("local", kept.name)]
    assert daemon.status()["mode_source"] == "command"
    assert daemon.cli("doctor", "--json", check=False).stdout.count('"consent record') == 0


def test_a_daemon_started_on_an_unreadable_record_keeps_nothing(
    daemon_factory: DaemonFactory,
) -> None:
    daemon = daemon_factory({"AGENT_TELEMETRY_RATE_LIMIT": "off"}, start=False)
    (daemon.home / "consent.json").write_text('{"mode": "of"}')
    daemon.start()
    status = daemon.status()
    assert (status["mode"], status["mode_source"]) == ("off", "unreadable")
    assert "names no mode off, local or upload ('of')" in status["mode_reason"]
    request = urllib.request.Request(
        daemon.http_url() + "/v1/events",
        data=json.dumps({"events": [{"event": "agent.run.completed"}]}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        assert json.loads(response.read())["mode"] == "off"
    assert not daemon.database.exists()  # off: nothing written
    assert "consent_unreadable" in daemon.log()

    out = daemon.cli("mode", "local").stdout  # through the running daemon
    (kept,) = daemon.home.glob("consent.json.unreadable-*")
    assert f"it is kept as {kept}" in out and kept.read_text() == '{"mode": "of"}'
    assert daemon.status()["mode"] == "local"
