"""A named pipe where the config file, the consent record, the service's environment file
or the dashboard token should be: opening one to read waits until someone writes into it,
which may be never, and anyone can make one in a shared folder. Each is refused without
being waited on: the daemon starts or refuses at once with the reason, the CLI answers,
and an agent's track() returns. The real daemon, CLI and both shims, each run with a
timeout, so a reader that waits fails the test instead of hanging it."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tests.conftest import DaemonFactory
from tests.daemon_process import CLI, DaemonProcess
from tests.test_shim_node import NODE_SHIM
from tests.test_tcp_peers import OTHER_UID, as_other_user
from tests.tools import required_tool

PROMPTLY = 20  # seconds: far more than any of these needs, far less than forever
PIPE = "is not a regular file (a named pipe)"

# The Python agent waits for its event to be handled (spooled, or dropped in `off`), so a
# reader stuck in its writer thread shows: the shim's exit is bounded, its flush() is not.
AGENTS = {
    "python": (
        "import json\n"
        "from agent_telemetry import flush, stats, track\n"
        "track('pipe.check', {'n': 1})\n"
        "print(json.dumps({'flushed': flush(5), **stats()}))\n"
    ),
    "node": "require(process.argv[1]).track('pipe.check', { n: 1 });\n",
}


def run_agents(daemon: DaemonProcess) -> dict[str, Any]:
    """A Python and a Node agent each track one event while the daemon is down; what the
    Python shim says it did with its event."""
    commands = {
        "python": [sys.executable, "-c", AGENTS["python"]],
        "node": [
            required_tool("nodejs", "node"),
            "-e",
            AGENTS["node"],
            str(NODE_SHIM / "index.js"),
        ],
    }
    said: dict[str, Any] = {}
    for name, command in commands.items():
        result = subprocess.run(
            command, env=daemon.env, capture_output=True, text=True, timeout=PROMPTLY
        )
        assert result.returncode == 0, (name, result.stderr)
        if name == "python":
            said = json.loads(result.stdout)
            assert said["flushed"] is True, said
    return said


def spool_files(daemon: DaemonProcess) -> list[Path]:
    return sorted((daemon.home / "data" / "spool").glob("*.ndjson"))


def stored_events(daemon: DaemonProcess, count: int) -> list[dict[str, Any]]:
    """The buffer's events once `count` are there (the daemon takes the spool on start)."""
    deadline = time.monotonic() + PROMPTLY
    events = daemon.export()
    while len(events) < count and time.monotonic() < deadline:
        time.sleep(0.1)
        events = daemon.export()
    return events


def make_pipe(path: Path, mode: int = 0o600) -> Path:
    os.mkfifo(path, mode)
    os.chmod(path, mode)  # whatever the umask
    return path


def test_a_pipe_as_the_config_file_stops_the_daemon_with_the_reason(
    daemon_factory: DaemonFactory,
) -> None:
    daemon = daemon_factory({"AGENT_TELEMETRY_RATE_LIMIT": "off"}, start=False)
    config = make_pipe(daemon.home / "config.toml")
    refused = subprocess.run(
        [CLI, "daemon"], env=daemon.env, capture_output=True, text=True, timeout=PROMPTLY
    )
    assert refused.returncode == 3, refused.stderr
    assert f"Error: {config}: {PIPE}, so it is not read" in refused.stderr
    assert not daemon.api_socket.exists()

    status = daemon.cli("status", "--json", timeout=PROMPTLY)
    assert json.loads(status.stdout)["running"] is False
    assert f"{config}: {PIPE}" in status.stderr
    doctor = daemon.cli("doctor", "--json", check=False, timeout=PROMPTLY)
    (check,) = [c for c in json.loads(doctor.stdout)["checks"] if c["name"] == "config"]
    assert check["verdict"] == "fail" and PIPE in check["detail"]

    # No consent record: the shims look for `mode` in the config file, find none, and keep
    # the events locally, as with no config file at all.
    assert run_agents(daemon)["spooled"] == 1
    assert len(spool_files(daemon)) == 2


def test_a_pipe_of_the_users_own_as_the_consent_record_counts_as_off(
    daemon_factory: DaemonFactory,
) -> None:
    """It says no mode, so it counts as any record that cannot be read: off."""
    daemon = daemon_factory({"AGENT_TELEMETRY_RATE_LIMIT": "off"}, start=False)
    record = make_pipe(daemon.home / "consent.json")

    assert run_agents(daemon)["drops"]["mode_off"] == 1
    assert spool_files(daemon) == []  # off: nothing kept, not even in the spool

    daemon.start(timeout=PROMPTLY)
    status = daemon.status()
    assert (status["mode"], status["mode_source"]) == ("off", "unreadable")
    assert status["mode_reason"].startswith(f"consent record unreadable: {record} {PIPE};")
    doctor = daemon.cli("doctor", "--json", check=False, timeout=PROMPTLY)
    (consent,) = [c for c in json.loads(doctor.stdout)["checks"] if c["name"] == "consent"]
    assert consent["verdict"] == "fail" and PIPE in consent["detail"]

    # The next choice keeps the pipe aside, as it keeps any unreadable record.
    out = daemon.cli("mode", "local", timeout=PROMPTLY).stdout
    (kept,) = daemon.home.glob("consent.json.unreadable-*")
    assert stat.S_ISFIFO(kept.lstat().st_mode) and f"it is kept as {kept}" in out
    assert daemon.status()["mode"] == "local"


def test_another_users_pipe_beside_a_shared_config_is_not_used(
    daemon_factory: DaemonFactory, shared_folder: Path
) -> None:
    """AGENT_TELEMETRY_CONFIG=/tmp/team.toml reads /tmp/consent.json, which someone else
    made a pipe: it is untrusted as their file would be, so it decides nothing, and the
    events stay on this machine."""
    record = shared_folder / "consent.json"
    made = as_other_user(
        sys.executable, "-c", "import os, sys; os.mkfifo(sys.argv[1], 0o644)", str(record)
    )
    assert made.returncode == 0, made.stderr
    assert record.stat().st_uid == OTHER_UID
    env = {
        "AGENT_TELEMETRY_CONFIG": str(shared_folder / "team.toml"),
        "AGENT_TELEMETRY_RATE_LIMIT": "off",
    }
    daemon = daemon_factory(env, start=False)

    assert run_agents(daemon)["spooled"] == 1
    assert len(spool_files(daemon)) == 2

    daemon.start(timeout=PROMPTLY)
    status = daemon.status()
    assert (status["mode"], status["mode_source"]) == ("local", "default")
    assert (
        f"{record} {PIPE} and belongs to uid {OTHER_UID}, so it is not used"
        in (status["mode_reason"])
    )
    events = stored_events(daemon, 2)
    assert sorted(e["agent"] for e in events) == ["node", "python"]
    assert {e["event"] for e in events} == {"pipe.check"}
    assert {e["upload"] for e in events} == {"local"}


def test_a_pipe_as_the_env_file_is_refused_by_name(daemon_factory: DaemonFactory) -> None:
    daemon = daemon_factory(start=False)
    env_file = make_pipe(daemon.home / "service.env")
    for args in (("status",), ("daemon",)):  # the daemon is started without click
        result = daemon.cli("--env-file", str(env_file), *args, check=False, timeout=PROMPTLY)
        assert result.returncode == 1, (args, result.stderr)
        assert f"cannot read {env_file}: {PIPE}" in result.stderr, args


def test_a_pipe_as_the_dashboard_token_is_replaced_by_a_token(
    daemon_factory: DaemonFactory,
) -> None:
    daemon = daemon_factory({"AGENT_TELEMETRY_RATE_LIMIT": "off"}, start=False)
    (daemon.home / "data").mkdir(mode=0o700)
    token = make_pipe(daemon.home / "data" / "dashboard-token")
    daemon.start(timeout=PROMPTLY)
    info = token.lstat()
    assert stat.S_ISREG(info.st_mode) and stat.S_IMODE(info.st_mode) == 0o600
    assert len(token.read_text().strip()) >= 32
