"""`agent-telemetry daemon` (with or without `--env-file FILE` in front, as the services run
it) starts the daemon without the click CLI, and behaves as the CLI's own command does."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from tests.daemon_process import CLI, DaemonProcess


def test_env_file_then_daemon_reads_the_file_and_runs(
    daemon_factory: Callable[..., DaemonProcess], tmp_path: Path
) -> None:
    stopped = daemon_factory(start=False)
    env_file = tmp_path / "service.env"
    env_file.write_text("AGENT_TELEMETRY_HTTP_PORT=off\nAGENT_TELEMETRY_IDLE_EXIT=7m\n")
    env_file.chmod(0o600)
    daemon = subprocess.Popen(
        [CLI, "--env-file", str(env_file), "daemon"],
        env=stopped.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        status: dict[str, object] = {}
        while not status.get("running"):
            assert daemon.poll() is None, daemon.stderr.read() if daemon.stderr else ""
            assert time.monotonic() < deadline, "the daemon never answered status"
            time.sleep(0.05)
            result = stopped.cli("status", "--json", check=False)
            status = json.loads(result.stdout) if result.returncode == 0 else {}
        assert status["pid"] == daemon.pid
        # The file's settings, not the environment's (which has a free port, no idle exit).
        assert status["paths"]["http"] is None  # type: ignore[index]
        assert status["idle_exit_seconds"] == 420
    finally:
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(30) == 0


def test_a_refused_env_file_stops_the_daemon_as_it_stops_any_command(
    daemon_factory: Callable[..., DaemonProcess], tmp_path: Path
) -> None:
    stopped = daemon_factory(start=False)
    env_file = tmp_path / "service.env"
    env_file.write_text("POSTHOG_API_KEY=phc_x\n")
    env_file.chmod(0o644)
    runs = {
        command: subprocess.run(
            [CLI, "--env-file", str(env_file), command],
            env=stopped.env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        for command in ("daemon", "status")
    }
    assert runs["daemon"].returncode == runs["status"].returncode == 1
    assert runs["daemon"].stderr == runs["status"].stderr
    assert f"chmod 600 {env_file}" in runs["daemon"].stderr
    assert not stopped.api_socket.exists()  # it never started
