"""The daemon run by hand in a terminal, as `agent-telemetry daemon` or `make run` runs it:
closing the terminal ends it like Ctrl-C, and a log nobody reads any more stops nothing."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import signal
import socket
import subprocess
import termios
import time
from collections.abc import Callable, Iterator

import pytest

from agent_telemetryd.cli.api_client import ApiClient, ApiError, DaemonUnavailableError
from agent_telemetryd.lock import running_pid
from tests.daemon_process import CLI, clean_environment, make_home


class HandStarted:
    """`agent-telemetry daemon` in a fresh home, with the given stdio."""

    def __init__(self, **popen: object) -> None:
        self.home = make_home()
        self.env = clean_environment(self.home)
        self.run = self.home / "run"
        self.proc = subprocess.Popen([CLI, "daemon"], env=self.env, **popen)  # type: ignore[call-overload]

    def wait_ready(self) -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"the daemon exited with {self.proc.returncode}"
            try:
                if self.status()["running"]:
                    return
            except (ApiError, DaemonUnavailableError, OSError):
                pass
            time.sleep(0.05)
        raise AssertionError("the daemon did not come up")

    def status(self) -> dict:
        return dict(ApiClient(self.run / "api.sock", 10).json("GET", "/v1/status"))

    def send(self, name: str) -> None:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
            client.connect(str(self.run / "ingest.sock"))
            client.sendall(json.dumps({"event": name}).encode() + b"\n")

    def stored(self) -> list[str]:
        """The names of the stored events, as `export` gives them (daemon up or down)."""
        out = subprocess.run(
            [CLI, "export", "--format", "ndjson"],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout
        return [json.loads(line)["event"] for line in out.splitlines()]

    def wait_stored(self, name: str) -> None:
        deadline = time.monotonic() + 20
        while name not in self.stored():
            assert time.monotonic() < deadline, f"{name} was not stored"
            time.sleep(0.05)

    def cleanup(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        shutil.rmtree(self.home, ignore_errors=True)


@pytest.fixture
def in_a_terminal() -> Iterator[tuple[HandStarted, int]]:
    """The daemon as the controlling process of a pseudo-terminal (a terminal window's
    shell runs it so); yields it and the terminal's master side."""
    master, follower = os.openpty()

    def take_terminal() -> None:
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    daemon = HandStarted(
        stdin=follower,
        stdout=follower,
        stderr=follower,
        start_new_session=True,
        preexec_fn=take_terminal,
    )
    os.close(follower)
    try:
        yield daemon, master
    finally:
        daemon.cleanup()
        with contextlib.suppress(OSError):  # the test may have closed it
            os.close(master)


def drain_terminal(master: int) -> None:
    """Read what the daemon wrote, so it never blocks on a full terminal."""
    os.set_blocking(master, False)
    with contextlib.suppress(OSError):  # nothing more to read
        while os.read(master, 65536):
            pass


def test_closing_the_terminal_stops_the_daemon_with_nothing_lost(
    in_a_terminal: tuple[HandStarted, int],
) -> None:
    daemon, master = in_a_terminal
    daemon.wait_ready()
    daemon.send("term.before_close")
    daemon.wait_stored("term.before_close")
    drain_terminal(master)

    os.close(master)  # the terminal window closes: the kernel hangs the terminal up

    assert daemon.proc.wait(30) == 0
    assert running_pid(daemon.run / "daemon.lock") is None  # the next start is not refused
    assert not (daemon.run / "api.sock").exists()
    assert daemon.stored() == ["term.before_close"]


def reload_by_sighup(daemon: HandStarted, meanwhile: Callable[[], object] = lambda: None) -> None:
    """A new batch size in the config, then SIGHUP: until the daemon reports it."""
    (daemon.home / "config.toml").write_text("batch_size = 7\n")
    (daemon.home / "config.toml").chmod(0o600)
    daemon.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 20
    while daemon.status()["upload"]["batch_size"] != 7:
        assert time.monotonic() < deadline, "SIGHUP did not reload the config"
        meanwhile()
        time.sleep(0.05)


def test_sighup_with_the_terminal_open_reloads_and_keeps_running(
    in_a_terminal: tuple[HandStarted, int],
) -> None:
    daemon, master = in_a_terminal
    daemon.wait_ready()
    pid = daemon.status()["pid"]
    reload_by_sighup(daemon, lambda: drain_terminal(master))
    assert daemon.proc.poll() is None and daemon.status()["pid"] == pid


def test_a_log_nobody_reads_any_more_stops_nothing() -> None:
    """The daemon's stderr is a pipe whose reader went away (`agent-telemetry daemon 2>&1 |
    head`, a log collector restarted): log lines are lost, requests are still answered and
    events stored, and SIGTERM still ends it cleanly."""
    daemon = HandStarted(stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        daemon.wait_ready()
        assert daemon.proc.stdout is not None
        daemon.proc.stdout.close()  # the reader is gone: every write now fails (EPIPE)
        daemon.send("pipe.after_reader_left")
        daemon.wait_stored("pipe.after_reader_left")
        assert daemon.status()["running"] is True
        daemon.proc.send_signal(signal.SIGTERM)
        assert daemon.proc.wait(30) == 0
    finally:
        daemon.cleanup()


def test_a_daemon_in_the_background_of_a_closed_terminal_still_reloads_on_sighup() -> None:
    """Started in the background (`(agent-telemetry daemon >log 2>&1 &)` from a login
    script, its stdin still the terminal): the terminal closing is not its end, and a
    SIGHUP sent afterwards asks for a reload, as ever."""
    master, follower = os.openpty()
    daemon = HandStarted(stdin=follower, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(follower)
    try:
        daemon.wait_ready()
        os.close(master)  # the login session's terminal goes away
        reload_by_sighup(daemon)
        assert daemon.proc.poll() is None
    finally:
        daemon.cleanup()
