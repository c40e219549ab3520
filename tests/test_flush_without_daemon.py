"""`flush` with the daemon down says why nothing would be sent without asking the daemon.

Under socket activation api.sock is held by the service manager, and connecting to it
starts the daemon: the upload timer runs `flush` every interval, and starting a daemon
only to hear "mode is local" would cost the laptop a start for nothing. So when the mode
does not upload, the sender sends nothing, or nothing is due, `flush` reads that from the
consent and the buffer file and leaves the socket alone. The socket here is a real
listener at api.sock's path, standing where systemd's would be.
"""

from __future__ import annotations

import json
import select
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.daemon_process import CLI, DaemonProcess
from tests.fakes.posthog_backend import FakePostHog
from tests.fakes.upload_helpers import Factory, post_events, posthog_env


@pytest.fixture
def posthog() -> Iterator[FakePostHog]:
    backend = FakePostHog().start()
    yield backend
    backend.stop()


def held_api_socket(daemon: DaemonProcess) -> socket.socket:
    """A listening socket at api.sock's path, as a socket unit keeps it."""
    path: Path = daemon.api_socket
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    if path.exists():
        path.unlink()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen()
    listener.setblocking(False)
    return listener


def connections_made(listener: socket.socket) -> int:
    count = 0
    while True:
        try:
            conn, _ = listener.accept()
        except BlockingIOError:
            return count
        conn.close()
        count += 1


def flush(daemon: DaemonProcess) -> dict[str, object]:
    result = daemon.cli("flush", "--json")
    return json.loads(result.stdout)


def test_in_mode_local_flush_does_not_start_the_daemon(daemon_factory: Factory) -> None:
    daemon = daemon_factory({}, start=False)
    listener = held_api_socket(daemon)
    try:
        report = flush(daemon)
        assert report["skipped"].startswith("mode is local")
        assert report["events_sent"] == 0 and report["error"] is None
        assert connections_made(listener) == 0
    finally:
        listener.close()


def test_with_nothing_pending_flush_does_not_start_the_daemon_and_with_events_it_does(
    daemon_factory: Factory, posthog: FakePostHog
) -> None:
    daemon = daemon_factory(posthog_env(posthog.url, AGENT_TELEMETRY_MODE="upload"))
    daemon.stop()
    listener = held_api_socket(daemon)
    try:
        assert flush(daemon)["skipped"] == "no events are pending upload"
        assert daemon.cli("flush").stdout.strip() == "Nothing sent: no events are pending upload."
        assert connections_made(listener) == 0
    finally:
        listener.close()

    daemon.start()
    post_events(daemon, 1)
    daemon.stop()
    listener = held_api_socket(daemon)
    try:
        assert_flush_asks_the_daemon(daemon, listener)  # something to send
    finally:
        listener.close()


def assert_flush_asks_the_daemon(daemon: DaemonProcess, listener: socket.socket) -> None:
    """`flush` connects to api.sock (under systemd that starts the daemon); here the
    connection is taken and closed unanswered, so the command fails."""
    command = subprocess.Popen(
        [CLI, "flush"], env=daemon.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    readable, _, _ = select.select([listener], [], [], 30)
    assert readable, "flush did not connect"
    conn, _ = listener.accept()
    conn.close()
    assert command.wait(timeout=30) != 0


def test_events_waiting_for_the_rate_limit_are_said_and_new_rules_let_the_daemon_decide(
    daemon_factory: Factory, posthog: FakePostHog
) -> None:
    env = posthog_env(posthog.url, AGENT_TELEMETRY_MODE="upload")
    daemon = daemon_factory({**env, "AGENT_TELEMETRY_RATE_LIMIT": "5/min"})
    post_events(daemon, 20)
    assert daemon.cli("flush", "--json").returncode == 0  # the first 5 go
    daemon.stop()
    listener = held_api_socket(daemon)
    try:
        skipped = str(flush(daemon)["skipped"])
        assert skipped.startswith(
            "none of the 15 pending events is due yet (the rate limit holds them; the first"
            " is due at 20"
        )
        assert connections_made(listener) == 0

        # The limit turned off while the daemon was down: at start it lets them all go, so
        # flush asks the daemon (under systemd, starting it) instead of saying they wait.
        daemon.env["AGENT_TELEMETRY_RATE_LIMIT"] = "off"
        assert_flush_asks_the_daemon(daemon, listener)
    finally:
        listener.close()
