"""A config file others can change, or one holding a key others can read, is not used:
the daemon refuses to start on it and every other command runs without it, warning — so
no command sends its key or follows its endpoint, and `doctor` fails it with the fix.
The real CLI and daemon, a loopback backend that records every request."""

from __future__ import annotations

import grp
import json
import os
import pwd
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import DaemonFactory
from tests.daemon_process import CLI, DaemonProcess
from tests.fakes.http_backend import FakeHttpBackend
from tests.fakes.upload_helpers import flush_json, post_events

KEY = "k-secret"


@pytest.fixture
def backend() -> Iterator[FakeHttpBackend]:
    server = FakeHttpBackend(api_key=KEY).start()
    yield server
    server.stop()


def _write_config(daemon: DaemonProcess, text: str, mode: int) -> Path:
    config = daemon.home / "config.toml"
    config.write_text(text)
    config.chmod(mode)
    return config


def _doctor(daemon: DaemonProcess) -> dict[str, dict[str, Any]]:
    result = daemon.cli("doctor", "--json", check=False)
    assert result.returncode == 1
    return {c["name"]: c for c in json.loads(result.stdout)["checks"]}


def _start_refused(daemon: DaemonProcess) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [CLI, "daemon"], env=daemon.env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 3 and not daemon.api_socket.exists()
    return result


def test_a_readable_key_is_used_by_no_command(
    daemon_factory: DaemonFactory, backend: FakeHttpBackend
) -> None:
    daemon = daemon_factory({"AGENT_TELEMETRY_RATE_LIMIT": "off"}, start=False)
    config = _write_config(
        daemon, f'[http]\nendpoint = "{backend.url}"\napi_key = "{KEY}"\n', 0o600
    )
    daemon.start()
    daemon.cli("enable")
    post_events(daemon, 2)
    assert flush_json(daemon)["events_sent"] == 2
    sent_id = daemon.status()["anonymous_id"]
    daemon.stop()
    config.chmod(0o644)
    before = len(backend.snapshot())

    forget = daemon.cli("forget", "--yes")
    # Nothing went out with the key from that file: no DELETE, no request at all.
    assert backend.snapshot()[before:] == [] and backend.deleted_ids == []
    warning = (
        f"Warning: {config}: http.api_key: an API key in a file others can read (mode 644): "
        "the file is not used (every setting in it at its default but mode off) until it is "
        f"private; run: chmod 600 {config}"
    )
    assert warning in forget.stderr.splitlines()
    assert sent_id in forget.stdout  # said to be waiting for erasure, not erased
    status = daemon.cli("status", "--json")
    assert json.loads(status.stdout)["sender"] == "none" and warning in status.stderr

    found = _doctor(daemon)
    assert found["config"]["verdict"] == "fail"
    assert "an API key in a file others can read (mode 644)" in found["config"]["detail"]
    assert found["config"]["fix"] == f"chmod 600 {config}, then: start the daemon"
    assert found["config_private"]["verdict"] == "fail"
    assert found["sender"]["verdict"] == "warn" and "not used" in found["sender"]["detail"]
    assert found["sender"]["fix"] == f"chmod 600 {config}"
    assert backend.snapshot()[before:] == []  # doctor did not probe with the key either
    assert "Error: " + warning.removeprefix("Warning: ") in _start_refused(daemon).stderr

    config.chmod(0o600)  # private again: forget reaches the backend with its key
    forget = daemon.cli("forget", "--yes")
    assert backend.deleted_ids == [sent_id] and not forget.stderr


def test_a_config_others_can_write_is_not_followed(
    daemon_factory: DaemonFactory, backend: FakeHttpBackend
) -> None:
    daemon = daemon_factory(start=False)
    config = _write_config(daemon, f'mode = "upload"\n[http]\nendpoint = "{backend.url}"\n', 0o666)
    warning = (
        f"Warning: {config}: others can change this file (mode 666), and with it where your "
        "events go: the file is not used (every setting in it at its default but mode off) "
        f"until only you can; run: chmod 600 {config}"
    )
    status = daemon.cli("status", "--json")
    assert warning in status.stderr.splitlines()
    report = json.loads(status.stdout)
    assert (report["sender"], report["mode"], report["mode_source"]) == ("none", "local", "default")
    preview = daemon.cli("preview")
    assert "Nothing would be sent" in preview.stdout and warning in preview.stderr
    assert "others can change this file (mode 666)" in _start_refused(daemon).stderr

    found = _doctor(daemon)
    assert found["config"]["verdict"] == "fail"
    assert found["config"]["fix"] == f"chmod 600 {config}, then: start the daemon"
    assert found["config_private"]["verdict"] == "fail"

    # Writable by a group others are in too; and an off in it still holds: keeping less is
    # safe whoever wrote it.
    config.write_text(f'mode = "off"\n[http]\nendpoint = "{backend.url}"\n')
    config.chmod(0o620)
    os.chown(config, -1, grp.getgrnam("nogroup").gr_gid)
    report = json.loads(daemon.cli("status", "--json").stdout)
    assert (report["sender"], report["mode"], report["mode_source"]) == ("none", "off", "config")
    assert backend.snapshot() == []


def test_a_file_only_the_users_own_group_can_change_is_used(
    daemon_factory: DaemonFactory, backend: FakeHttpBackend
) -> None:
    """umask 002 makes an editor's new file 664 where every user has a group of their own:
    no one else can change it, and it is used as written."""
    daemon = daemon_factory(start=False)
    config = _write_config(daemon, f'sender = "http"\n[http]\nendpoint = "{backend.url}"\n', 0o664)
    me = pwd.getpwuid(os.getuid())
    assert grp.getgrgid(me.pw_gid).gr_name == me.pw_name  # this machine's user has such a group
    os.chown(config, -1, me.pw_gid)
    result = daemon.cli("status", "--json")
    assert "others can change" not in result.stderr
    assert json.loads(result.stdout)["sender"] == "http"


def test_a_running_daemon_does_not_reload_a_config_others_can_write(
    daemon_factory: DaemonFactory, backend: FakeHttpBackend
) -> None:
    daemon = daemon_factory(start=False)
    config = _write_config(daemon, "batch_size = 10\n", 0o600)
    daemon.start()
    config.write_text(f'sender = "http"\n[http]\nendpoint = "{backend.url}"\n')
    config.chmod(0o646)
    result = daemon.cli("reload", "--json", check=False)
    assert result.returncode != 0
    assert "others can change this file (mode 646)" in result.stdout + result.stderr
    assert daemon.status()["sender"] == "none"
