"""A runtime folder someone else made first: the real daemon and fresh shims both move to
`<data dir>/run`, and events still arrive.

The daemon runs without AGENT_TELEMETRY_HOME, so its paths come from the XDG variables, as
for a user: the runtime folder from XDG_RUNTIME_DIR (a shared, sticky parent here, as /tmp
is), the data dir from XDG_DATA_HOME.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import DaemonFactory
from tests.daemon_process import DaemonProcess, make_home
from tests.tools import required_tool

NODE_SHIM = Path(__file__).resolve().parent.parent / "client_shim" / "node" / "index.js"


def _another_users_folder(folder: Path) -> None:
    folder.mkdir(mode=0o700)
    os.chown(folder, 65534, 65534)  # nobody: their own private folder, in our way


def _a_symlink_elsewhere(folder: Path) -> None:
    target = folder.parent / "someone-elses"
    target.mkdir(mode=0o700)
    folder.symlink_to(target)


SQUATS: dict[str, Callable[[Path], None]] = {
    "another uid's folder": _another_users_folder,
    "a symlink": _a_symlink_elsewhere,
}


def _wait_running(daemon: DaemonProcess, api_socket: Path, timeout: float = 20.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert daemon.proc is not None
        if daemon.proc.poll() is not None:
            raise AssertionError(f"daemon exited {daemon.proc.returncode}:\n{daemon.log()}")
        if api_socket.exists():
            result = daemon.cli("status", "--json", check=False)
            if result.returncode == 0 and json.loads(result.stdout)["running"]:
                return json.loads(result.stdout)
        time.sleep(0.05)
    raise AssertionError(f"daemon not ready:\n{daemon.log()}")


@pytest.mark.parametrize("squat", sorted(SQUATS))
def test_a_squatted_runtime_folder_moves_daemon_and_shims_to_the_data_dir(
    daemon_factory: DaemonFactory, squat: str
) -> None:
    if squat == "another uid's folder" and os.geteuid() != 0:
        pytest.skip("making another uid's folder needs root (CI runs as root)")
    home = make_home()
    shared = home / "xdg-run"
    shared.mkdir()
    os.chmod(shared, 0o1777)  # like /tmp: anyone may create a folder in it
    squatted = shared / "agent-telemetry"
    SQUATS[squat](squatted)
    env = {
        "AGENT_TELEMETRY_HOME": "",  # unset: the XDG variables decide, as for a user
        "XDG_RUNTIME_DIR": str(shared),
        "XDG_DATA_HOME": str(home / "xdg-data"),
        "XDG_CONFIG_HOME": str(home / "xdg-config"),
        "AGENT_TELEMETRY_RATE_LIMIT": "off",
    }
    daemon = daemon_factory(env, start=False, home=home)
    daemon.start(wait=False)
    fallback = home / "xdg-data" / "agent-telemetry" / "run"
    status = _wait_running(daemon, fallback / "api.sock")

    assert status["paths"]["ingest_socket"] == str(fallback / "ingest.sock")
    assert (fallback.stat().st_mode & 0o777) == 0o700
    assert f"runtime folder {squatted} " in daemon.log()  # it says why
    assert f"using {fallback}" in daemon.log()

    # Fresh agents, with the daemon's environment, find it there.
    agent_env = dict(daemon.env)
    subprocess.run(
        [sys.executable, "-c", "from agent_telemetry import track; track('from.python')"],
        env=agent_env,
        check=True,
        timeout=30,
    )
    script = f"require({json.dumps(str(NODE_SHIM))}).track('from.node');"
    node = required_tool("nodejs", "node")
    subprocess.run([node, "-e", script], env=agent_env, check=True, timeout=30)
    expected = {"from.python", "from.node"}
    deadline = time.monotonic() + 20
    names: set[str] = set()
    while names != expected and time.monotonic() < deadline:
        names = {event["event"] for event in daemon.export()}
        time.sleep(0.1)
    assert names == expected
    # Nothing was put in the folder someone else controls, and nothing was spooled.
    assert not any(squatted.resolve().iterdir())
    assert not (home / "xdg-data" / "agent-telemetry" / "spool").exists()
