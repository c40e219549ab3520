"""A consent record that cannot be read: the user's choice is never silently reset to
collecting. It counts as `off`, `status` and `doctor` say why and how to fix it, and the
next `mode` keeps the broken file instead of writing over it. The real CLI and daemon."""

from __future__ import annotations

import json
import sys
import urllib.request
from pathlib import Path

from tests.conftest import DaemonFactory
from tests.test_daemon_ingest import post_events
from tests.test_tcp_peers import OTHER_UID, as_other_user


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


# Another user's record, written where a config in a shared folder puts it.
PLANT_RECORD = """
import json, sys
with open(sys.argv[1], "w") as out:
    json.dump({"mode": sys.argv[2], "since": "2026-01-01T00:00:00Z", "history": []}, out)
"""


def plant_record(folder: Path, mode: str) -> Path:
    record = folder / "consent.json"
    result = as_other_user(sys.executable, "-c", PLANT_RECORD, str(record), mode)
    assert result.returncode == 0, result.stderr
    assert record.stat().st_uid == OTHER_UID
    return record


def test_another_users_record_beside_a_shared_config_does_not_turn_upload_on(
    daemon_factory: DaemonFactory, shared_folder: Path
) -> None:
    """With AGENT_TELEMETRY_CONFIG in a shared folder the record is read from there too:
    another user's consent.json saying upload is not the user's choice, and is not used."""
    record = plant_record(shared_folder, "upload")
    config = {"AGENT_TELEMETRY_CONFIG": str(shared_folder / "team.toml")}
    daemon = daemon_factory({**config, "AGENT_TELEMETRY_RATE_LIMIT": "off"})
    status = daemon.status()
    assert (status["mode"], status["mode_source"]) == ("local", "default")
    assert f"{record} belongs to uid {OTHER_UID}, so it is not used" in status["mode_reason"]
    assert post_events(daemon.http_url(), [{"event": "stays.here"}])[0] == 202
    assert [row["upload"] for row in daemon.export()] == ["local"]
    doctor = json.loads(daemon.cli("doctor", "--json", check=False).stdout)
    (consent,) = [c for c in doctor["checks"] if c["name"] == "consent"]
    assert consent["verdict"] == "warn"
    assert "agent-telemetry mode off|local|upload" in consent["fix"]


def test_another_users_record_is_honoured_when_it_keeps_less(
    daemon_factory: DaemonFactory, shared_folder: Path
) -> None:
    """`off` is safe whoever asks for it, as in a config file that is not the user's."""
    plant_record(shared_folder, "off")
    daemon = daemon_factory(
        {"AGENT_TELEMETRY_CONFIG": str(shared_folder / "team.toml")}, start=False
    )
    status = daemon.status()
    assert (status["mode"], status["mode_source"]) == ("off", "command")
