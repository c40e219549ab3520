"""Idle exit: a socket-activated daemon ends itself after a quiet period, and only then.

The daemon runs as systemd runs it: its listening sockets bound by the test and passed as
LISTEN_FDS (`spawn_activated`); the full path through a real `systemd --user` is in
test_service_user_manager.py. What keeps the daemon up is read from its debug log line
`idle_exit_deferred`, written each time the quiet period ended and something held it.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from agent_telemetryd.config import load_config
from agent_telemetryd.idle import DEFAULT_IDLE_EXIT_SECONDS, idle_exit_seconds
from tests.daemon_process import CLI, DaemonProcess, clean_environment, make_home
from tests.fakes.http_backend import FakeHttpBackend
from tests.test_service_activation import listening_sockets, spawn_activated
from tests.test_service_daemon import send_line


@pytest.mark.parametrize(
    ("env", "activated", "expected"),
    [
        ({}, False, None),  # started by hand: nobody would start it again
        ({}, True, DEFAULT_IDLE_EXIT_SECONDS),
        ({"AGENT_TELEMETRY_IDLE_EXIT": "off"}, True, None),
        ({"AGENT_TELEMETRY_IDLE_EXIT": "90s"}, True, 90.0),
        ({"AGENT_TELEMETRY_IDLE_EXIT": "2m"}, False, 120.0),  # asked for, by hand too
        ({"AGENT_TELEMETRY_OTLP_HTTP_PORT": "4318"}, True, None),  # a port it binds itself
    ],
)
def test_when_a_quiet_daemon_exits(
    env: dict[str, str], activated: bool, expected: float | None, tmp_path: Path
) -> None:
    config = load_config({**env, "AGENT_TELEMETRY_HOME": str(tmp_path)})
    assert idle_exit_seconds(config, socket_activated=activated) == expected
    # Activated without its HTTP port (systemd's unit for it could not listen), the daemon
    # that bound the port itself must stay: stopped, nobody would hold the port.
    if config.idle_exit is None:
        assert idle_exit_seconds(config, socket_activated=activated, binds_http_port=True) is None


# What the two socket units pass: ingest.sock and api.sock from agent-telemetry.socket,
# the TCP port from agent-telemetry-http.socket.
UNIT_NAMES = ["agent-telemetry.socket", "agent-telemetry.socket", "agent-telemetry-http.socket"]


class Activated:
    """A daemon started the way a socket unit starts it, with its log in a file."""

    def __init__(self, env: dict[str, str], tcp: bool = True) -> None:
        self.home = make_home()
        run = self.home / "run"
        run.mkdir(mode=0o700)
        self.sockets = listening_sockets(run)
        if not tcp:  # the HTTP port's unit failed: only the Unix sockets are passed
            self.sockets.pop().close()
        self.process = DaemonProcess(self.home, clean_environment(self.home, env))
        self.log_file = (self.home / "daemon.log").open("w")
        self.proc = spawn_activated(
            [CLI, "daemon"],
            self.sockets,
            UNIT_NAMES[: len(self.sockets)],
            env=self.process.env,
            stdout=self.log_file,
            stderr=subprocess.STDOUT,
        )

    def log_lines(self) -> list[dict[str, Any]]:
        text = (self.home / "daemon.log").read_text()
        return [json.loads(line) for line in text.splitlines() if line.startswith("{")]

    def logged(self, event: str) -> list[dict[str, Any]]:
        return [line for line in self.log_lines() if line.get("event") == event]

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.log_file.close()
        for sock in self.sockets:
            sock.close()
        shutil.rmtree(self.home, ignore_errors=True)


@pytest.fixture
def activate() -> Iterator[Callable[..., Activated]]:
    made: list[Activated] = []

    def start(env: dict[str, str], tcp: bool = True) -> Activated:
        made.append(Activated(env, tcp))
        return made[-1]

    yield start
    for daemon in made:
        daemon.close()


def eventually(predicate: Callable[[], Any], timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


QUIET = {"AGENT_TELEMETRY_IDLE_EXIT": "1s", "AGENT_TELEMETRY_LOG_LEVEL": "debug"}


def test_an_open_connection_holds_the_exit_and_its_end_starts_the_quiet_period(
    activate: Callable[[dict[str, str]], Activated],
) -> None:
    daemon = activate(QUIET)
    ingest = daemon.home / "run" / "ingest.sock"
    agent = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    agent.connect(str(ingest))
    agent.sendall(b'{"event": "idle.held"}\n')
    deferred = eventually(lambda: daemon.logged("idle_exit_deferred"))
    assert deferred[0]["reason"] == "a connection to the ingest listener is open"
    assert daemon.proc.poll() is None
    agent.close()
    assert daemon.proc.wait(timeout=30) == 0  # the same clean exit as SIGTERM's
    exits = daemon.logged("idle_exit")
    assert len(exits) == 1 and exits[0]["quiet_seconds"] == 1.0
    assert daemon.logged("daemon_stopped")
    assert [e["event"] for e in daemon.process.export()] == ["idle.held"]


def test_the_next_event_after_an_idle_exit_waits_in_the_socket_and_is_stored(
    activate: Callable[[dict[str, str]], Activated],
) -> None:
    daemon = activate(QUIET)
    assert daemon.proc.wait(timeout=30) == 0
    # What a socket unit does next: the socket stays, an agent writes to it...
    send_line(daemon.home / "run" / "ingest.sock", {"event": "idle.after_exit"})
    # ...and its connection starts the daemon again, which takes what waits.
    restarted = spawn_activated(
        [CLI, "daemon"],
        daemon.sockets,
        UNIT_NAMES,
        env=daemon.process.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert restarted.wait(timeout=30) == 0  # and, quiet again, it exits again
    finally:
        if restarted.poll() is None:
            restarted.kill()
    assert [e["event"] for e in daemon.process.export()] == ["idle.after_exit"]


def test_an_upload_due_within_the_quiet_period_is_made_before_the_exit(
    activate: Callable[[dict[str, str]], Activated],
) -> None:
    backend = FakeHttpBackend(api_key="idle-key").start()
    try:
        daemon = activate(
            {
                **QUIET,
                "AGENT_TELEMETRY_IDLE_EXIT": "2s",
                "AGENT_TELEMETRY_MODE": "upload",
                "AGENT_TELEMETRY_UPLOAD_INTERVAL": "3s",
                "AGENT_TELEMETRY_RATE_LIMIT": "off",
                "TELEMETRY_ENDPOINT": backend.url,
                "TELEMETRY_API_KEY": "idle-key",
            }
        )
        send_line(daemon.home / "run" / "ingest.sock", {"event": "idle.uploaded"})
        assert daemon.proc.wait(timeout=60) == 0
        assert [e["event"] for e in backend.stored.values()] == ["idle.uploaded"]
        reasons = [line["reason"] for line in daemon.logged("idle_exit_deferred")]
        assert "an upload is due within the quiet period" in reasons
        assert daemon.logged("flush_finished")[-1]["events_sent"] == 1
    finally:
        backend.stop()


def test_status_says_when_a_quiet_daemon_exits(
    activate: Callable[[dict[str, str]], Activated], daemon: DaemonProcess
) -> None:
    assert daemon.status()["idle_exit_seconds"] is None  # started by hand
    activated = activate({})
    status = eventually(lambda: _status(activated.process))
    assert status["idle_exit_seconds"] == DEFAULT_IDLE_EXIT_SECONDS


def _status(process: DaemonProcess) -> dict[str, Any] | None:
    result = process.cli("status", "--json", check=False)
    if result.returncode != 0:
        return None
    status = json.loads(result.stdout)
    return status if status.get("running") else None


def test_activated_without_its_http_port_the_daemon_binds_it_or_says_why(
    activate: Callable[..., Activated],
) -> None:
    """What systemd does when agent-telemetry-http.socket could not listen: the service
    starts with the Unix sockets only. The daemon binds the configured port itself, as by
    hand, and then does not idle out (it would leave the port unheld); when the port is
    taken it runs on its sockets, says why, and idles out as usual."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        free = probe.getsockname()[1]
    bound = activate({"AGENT_TELEMETRY_HTTP_PORT": str(free)}, tcp=False)
    status = eventually(lambda: _status(bound.process))
    assert status["paths"]["http"] == f"http://127.0.0.1:{free}"
    assert status["http_unavailable"] is None
    assert status["idle_exit_seconds"] is None

    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        taken = other.getsockname()[1]
        without = activate({"AGENT_TELEMETRY_HTTP_PORT": str(taken)}, tcp=False)
        status = eventually(lambda: _status(without.process))
    assert status["paths"]["http"] is None
    assert f"cannot listen on 127.0.0.1:{taken}" in status["http_unavailable"]
    assert status["idle_exit_seconds"] == DEFAULT_IDLE_EXIT_SECONDS
    send_line(without.home / "run" / "ingest.sock", {"event": "idle.no_http"})
    eventually(lambda: [e["event"] for e in without.process.export()] == ["idle.no_http"])
