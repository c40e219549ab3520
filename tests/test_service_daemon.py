"""The real daemon under a (simulated) service manager: inherited sockets and sd_notify.

The daemon runs as a subprocess in a temporary AGENT_TELEMETRY_HOME, exactly as systemd
would start it: listening sockets as fds 3.. with LISTEN_* set, and a NOTIFY_SOCKET this
test reads READY=1 / STOPPING=1 / WATCHDOG=1 from.
"""

from __future__ import annotations

import http.client
import json
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.daemon_process import clean_environment, make_home
from tests.test_service_activation import listening_sockets, spawn_activated

AGENT_TELEMETRY = Path(sys.executable).parent / "agent-telemetry"
STARTUP_TIMEOUT_S = 30


def daemon_env(home: Path, **extra: str) -> dict[str, str]:
    env = clean_environment(home, {"AGENT_TELEMETRY_MODE": "local", **extra})
    # The watchdog of whatever manager runs the tests is not the daemon's to pet.
    for key in ("WATCHDOG_USEC", "WATCHDOG_PID"):
        if key not in extra:
            env.pop(key, None)
    return env


class NotifyListener:
    """Systemd's side of sd_notify: a datagram socket collecting what the daemon says."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.messages: list[str] = []

    def wait_for(self, state: str, timeout: float = STARTUP_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout
        while state not in self.messages:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no {state} within {timeout}s; got {self.messages}")
            self.sock.settimeout(remaining)
            try:
                self.messages += self.sock.recv(4096).decode().split("\n")
            except TimeoutError:
                continue

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def home() -> Iterator[Path]:
    path = make_home()  # short: socket paths must fit in 107 bytes
    (path / "run").mkdir(mode=0o700)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def notify(tmp_path: Path) -> Iterator[NotifyListener]:
    listener = NotifyListener(tmp_path / "notify.sock")
    yield listener
    listener.close()


def stop(process: subprocess.Popen[str]) -> int:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        return process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        raise


def exported(home: Path) -> list[dict[str, object]]:
    result = subprocess.run(
        [str(AGENT_TELEMETRY), "export", "--format", "ndjson"],
        env=daemon_env(home),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]


def send_line(path: Path, event: dict[str, object]) -> None:
    # No retry on purpose: READY=1 promised the socket already takes events.
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
        client.connect(str(path))
        client.sendall(json.dumps(event).encode() + b"\n")


def post_event(port: int, event: dict[str, object]) -> int:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request(
            "POST", "/v1/events", json.dumps(event), {"Content-Type": "application/json"}
        )
        return connection.getresponse().status
    finally:
        connection.close()


def test_activated_daemon_takes_events_through_inherited_sockets(
    home: Path, notify: NotifyListener
) -> None:
    run = home / "run"
    sockets = listening_sockets(run)
    tcp_port = sockets[2].getsockname()[1]
    env = daemon_env(home, NOTIFY_SOCKET=str(notify.path), WATCHDOG_USEC="400000")
    # All three named alike, as the shipped single .socket unit passes them.
    daemon = spawn_activated(
        [str(AGENT_TELEMETRY), "daemon"],
        sockets,
        ["agent-telemetry.socket"] * 3,
        env=env,
        stderr=subprocess.PIPE,
    )
    try:
        notify.wait_for("READY=1")
        send_line(run / "ingest.sock", {"event": "svc.activated.unix"})
        assert post_event(tcp_port, {"event": "svc.activated.http"}) == 202
        # WatchdogSec=0.4s is configured: the daemon pets at half of it.
        notify.wait_for("WATCHDOG=1", timeout=5)
    finally:
        for sock in sockets:
            sock.close()  # the daemon holds its own copies, as under systemd
        code = stop(daemon)
    stderr = daemon.stderr.read() if daemon.stderr else ""
    assert code == 0, stderr
    notify.wait_for("STOPPING=1", timeout=1)
    # The socket files belong to the socket unit, not the daemon: they stay for the next start.
    assert (run / "ingest.sock").exists() and (run / "api.sock").exists()
    events = {e["event"]: e for e in exported(home)}
    assert set(events) == {"svc.activated.unix", "svc.activated.http"}
    assert events["svc.activated.unix"]["transport"] == "unix"
    assert events["svc.activated.http"]["transport"] == "http"


def test_self_started_daemon_is_ready_only_once_ingest_works(
    home: Path, notify: NotifyListener
) -> None:
    """Without activation the daemon binds its own sockets; READY=1 comes after that."""
    env = daemon_env(home, NOTIFY_SOCKET=str(notify.path), AGENT_TELEMETRY_HTTP_PORT="off")
    daemon = subprocess.Popen(
        [str(AGENT_TELEMETRY), "daemon"], env=env, stderr=subprocess.PIPE, text=True
    )
    try:
        notify.wait_for("READY=1")
        # At READY the socket exists and accepts: no retry loop needed by anyone.
        send_line(home / "run" / "ingest.sock", {"event": "svc.ready.first"})
        # No watchdog configured: the daemon never sends WATCHDOG=1 on its own.
        assert not [m for m in notify.messages if m.startswith("WATCHDOG")]
    finally:
        code = stop(daemon)
    assert code == 0, daemon.stderr.read() if daemon.stderr else ""
    notify.wait_for("STOPPING=1", timeout=1)
    assert notify.messages.index("READY=1") < notify.messages.index("STOPPING=1")
    assert [e["event"] for e in exported(home)] == ["svc.ready.first"]
    # Sockets it bound itself, it removes.
    assert not (home / "run" / "ingest.sock").exists()
