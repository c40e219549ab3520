"""A daemon that does not answer in time: a command that said it failed never takes effect
later, and `status` still shows what the files say.

The daemon is stopped with SIGSTOP (a hung disk looks the same to a command), and the
commands wait one second (AGENT_TELEMETRY_API_TIMEOUT) instead of thirty.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator

from tests.conftest import DaemonFactory
from tests.daemon_process import CLI, DaemonProcess
from tests.fakes.upload_helpers import post_events


@contextlib.contextmanager
def stopped(daemon: DaemonProcess) -> Iterator[int]:
    assert daemon.proc is not None
    pid = daemon.proc.pid
    os.kill(pid, signal.SIGSTOP)
    try:
        yield pid
    finally:
        os.kill(pid, signal.SIGCONT)


def run(daemon: DaemonProcess, *args: str, timeout: str) -> subprocess.CompletedProcess[str]:
    env = {**daemon.env, "AGENT_TELEMETRY_API_TIMEOUT": timeout}
    return subprocess.run([CLI, *args], env=env, capture_output=True, text=True, timeout=60)


def wait_until(predicate: object, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise AssertionError("timed out")


NOT_APPLIED = (
    "Error: the daemon did not answer within 1 s: the command was NOT applied, and will not "
    "be (the daemon refuses it once 0.5 s have passed); check the daemon with: "
    "agent-telemetry doctor, then run the command again"
)


def test_commands_that_timed_out_never_take_effect_and_status_reads_the_files(
    daemon_factory: DaemonFactory,
) -> None:
    daemon = daemon_factory({"AGENT_TELEMETRY_RATE_LIMIT": "off"})
    post_events(daemon, 3)
    with stopped(daemon) as pid:
        cleared = run(daemon, "clear", "--yes", timeout="1")
        off = run(daemon, "mode", "off", timeout="1")
        status = run(daemon, "status", timeout="1")
    assert (cleared.returncode, cleared.stderr.strip()) == (1, NOT_APPLIED)
    assert (off.returncode, off.stderr.strip()) == (1, NOT_APPLIED)
    assert cleared.stdout == off.stdout == ""

    assert status.returncode == 1, status.stderr  # told, but not a daemon that answers
    lines = dict(line.split(":", 1) for line in status.stdout.splitlines())
    assert lines["daemon"].strip() == (
        f"running (pid {pid}) but not answering (the daemon did not answer within 1 s); "
        "the rest is read from the files: check it with agent-telemetry doctor"
    )
    assert lines["mode"].strip().startswith("local")
    assert lines["events"].strip().startswith("3 stored")

    # Running again, the daemon finds both requests in its socket and refuses them.
    wait_until(lambda: daemon.log().count("late_command_refused") == 2)
    after = daemon.status()
    assert (after["mode"], after["buffer"]["events"]) == ("local", 3)
    assert [row["event"] for row in daemon.export()] == ["agent.run.completed"] * 3


def test_a_command_the_daemon_reaches_after_its_deadline_is_refused_in_so_many_words(
    daemon: DaemonProcess,
) -> None:
    # The command waits 8 s; the daemon may begin it for 4 s after it was sent. It runs
    # again after 5.5 s: late for the command, which is still waiting and hears why.
    with stopped(daemon):
        env = {**daemon.env, "AGENT_TELEMETRY_API_TIMEOUT": "8"}
        command = subprocess.Popen(
            [CLI, "mode", "off"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        time.sleep(5.5)
    out, err = command.communicate(timeout=30)
    assert command.returncode == 1 and out == ""
    assert err.strip() == (
        "Error: the command reached the daemon after its deadline (the daemon was stopped or "
        "busy), so it was NOT applied; run it again"
    )
    assert daemon.status()["mode"] == "local"


def test_a_late_request_is_logged_by_route_and_an_unknown_path_is_a_404(
    daemon: DaemonProcess,
) -> None:
    """A script's late request to a route is refused and logged by the route's pattern; one
    to a path no route takes is a plain 404 (nothing was there to apply), and the path a
    client wrote never reaches the log."""
    deadline = {"Agent-Telemetry-Deadline": "0"}  # long past
    assert api_post(daemon, "/v1/clear", deadline)[0] == 408
    status, body = api_post(daemon, "/v1/mode-CANARY-path", deadline)
    assert status == 404, body
    wait_until(lambda: "late_command_refused" in daemon.log())
    assert daemon.stop() == 0  # every line is written by now
    log = daemon.log()
    assert '"route": "/v1/clear"' in log
    assert "CANARY" not in log
    assert log.count("late_command_refused") == 1


def api_post(daemon: DaemonProcess, path: str, headers: dict[str, str]) -> tuple[int, str]:
    connection = UnixHTTPConnection(str(daemon.api_socket))
    try:
        connection.request("POST", path, body=b"{}", headers=headers)
        response = connection.getresponse()
        return response.status, response.read().decode()
    finally:
        connection.close()


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("localhost", timeout=30)
        self._path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(30)
        self.sock.connect(self._path)
