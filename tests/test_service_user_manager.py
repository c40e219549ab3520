"""install → events → restart on crash → uninstall, under a real `systemd --user`.

The test starts its own user manager with a private HOME and XDG_RUNTIME_DIR, so it never
touches the machine's real one. systemd refuses to run a user manager unless the machine was
booted with systemd (it checks for /run/systemd/system); in a container that was not, the
test is skipped with the reason.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.fakes.http_backend import FakeHttpBackend
from tests.test_service_daemon import AGENT_TELEMETRY, post_event, send_line

SYSTEMD = shutil.which("systemd") or "/lib/systemd/systemd"

BOOTED_MARKER = Path("/run/systemd/system")
MARKER_LOCK = Path(tempfile.gettempdir()) / "agent-telemetry-user-manager-test.lock"


@pytest.fixture
def booted_marker() -> Iterator[None]:
    """systemd refuses `--user` unless /run/systemd/system exists (sd_booted). In a container
    that was not booted with systemd, the test (as root) makes the marker for its own run
    and removes it afterwards, so the real user manager can be exercised here and in CI.
    The marker is machine-wide: two test runs at once take turns (a lock file), or one
    would remove it under the other."""
    with open(MARKER_LOCK, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if BOOTED_MARKER.is_dir():
            yield
            return
        if os.geteuid() != 0:
            pytest.skip("not booted with systemd and not root: cannot run `systemd --user`")
        BOOTED_MARKER.mkdir(parents=True)
        try:
            yield
        finally:
            BOOTED_MARKER.rmdir()


class UserManager:
    def __init__(self, root: Path) -> None:
        self.home = root / "home"
        self.runtime = root / "run"
        self.home.mkdir()
        self.runtime.mkdir(mode=0o700)
        # PYTHONPATH: the commands and the services run the code under test, not whatever
        # copy of the package the venv has installed.
        keep = ("PATH", "LANG", "TZ", "PYTHONPATH")
        self.env = {k: os.environ[k] for k in keep if k in os.environ}
        self.env.update(HOME=str(self.home), XDG_RUNTIME_DIR=str(self.runtime))
        self.process = subprocess.Popen(
            [SYSTEMD, "--user"],
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )

    def run(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            list(argv), env=self.env, capture_output=True, text=True, timeout=60, check=check
        )

    def systemctl(self, *argv: str) -> subprocess.CompletedProcess[str]:
        return self.run("systemctl", "--user", *argv, check=False)

    def show(self, *props: str, unit: str = "agent-telemetry.service") -> dict[str, str]:
        args = [f"--property={p}" for p in props]
        out = self.systemctl("show", unit, *args).stdout
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def wait_until(self, predicate: object, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():  # type: ignore[operator]
                return
            time.sleep(0.1)
        raise AssertionError(f"timed out; service: {self.show('ActiveState', 'MainPID')}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@pytest.fixture
def manager(booted_marker: None) -> Iterator[UserManager]:
    root = Path(tempfile.mkdtemp(prefix="at-um-", dir="/tmp"))  # short socket paths
    user_manager = UserManager(root)
    try:
        deadline = time.monotonic() + 20
        state = ""
        while time.monotonic() < deadline and user_manager.process.poll() is None:
            state = user_manager.systemctl("is-system-running").stdout.strip()
            if state in ("running", "degraded"):
                break
            time.sleep(0.1)
        else:
            pytest.skip(f"`systemd --user` did not come up here (state {state!r})")
        yield user_manager
    finally:
        user_manager.stop()
        shutil.rmtree(root, ignore_errors=True)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# The quiet period after which the daemon exits by itself, in the tests that use it.
QUIET = "2s"


HTTP_SOCKET = "agent-telemetry-http.socket"


def port_drop_in(manager: UserManager, port: int) -> None:
    """The documented way to move the HTTP port: a drop-in for its socket unit that resets
    ListenStream=. Each test uses a port of its own, never the machine's 7468."""
    drop_in = manager.home / f".config/systemd/user/{HTTP_SOCKET}.d/port.conf"
    drop_in.parent.mkdir(parents=True)
    drop_in.write_text(f"[Socket]\nListenStream=\nListenStream=127.0.0.1:{port}\n")


def socket_drop_in(manager: UserManager, at_home: Path) -> Path:
    """A free port for the HTTP socket unit; returns AGENT_TELEMETRY_HOME's run dir, where
    install puts the Unix sockets."""
    port_drop_in(manager, free_port())
    return at_home / "run"


def started_at(manager: UserManager) -> str:
    """When the daemon's process last started (monotonic µs; 0 before the first start)."""
    return manager.show("ExecMainStartTimestampMonotonic")["ExecMainStartTimestampMonotonic"]


def stop_then_wake_by_ingest(manager: UserManager, run_dir: Path, event: str) -> None:
    """Stop the daemon, send `event` to ingest.sock, and wait until that started it again."""
    manager.systemctl("stop", "agent-telemetry.service")
    manager.wait_until(lambda: manager.show("ActiveState")["ActiveState"] == "inactive")
    before = started_at(manager)
    send_line(run_dir / "ingest.sock", {"event": event})
    manager.wait_until(lambda: started_at(manager) != before)
    manager.wait_until(lambda: manager.show("ActiveState")["ActiveState"] == "active")


def cli_for(shell: dict[str, str]) -> Callable[..., subprocess.CompletedProcess[str]]:
    """The CLI as run from a user's shell whose environment is `shell`."""

    def cli(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(AGENT_TELEMETRY), *argv], env=shell, capture_output=True, text=True, timeout=120
        )

    return cli


def test_install_events_restart_on_crash_uninstall(manager: UserManager) -> None:
    port = free_port()
    port_drop_in(manager, port)

    installed = manager.run(str(AGENT_TELEMETRY), "service", "install")
    assert "ran: systemctl --user enable --now" in installed.stdout

    status = json.loads(manager.run(str(AGENT_TELEMETRY), "service", "status", "--json").stdout)
    assert status["installed"] and status["enabled"] and status["running"], status
    first_pid = status["pid"]

    ingest = manager.runtime / "agent-telemetry" / "ingest.sock"
    send_line(ingest, {"event": "um.before_crash"})
    assert post_event(port, {"event": "um.http"}) == 202

    os.kill(first_pid, signal.SIGKILL)
    manager.wait_until(
        lambda: (
            manager.show("MainPID")["MainPID"] not in ("0", str(first_pid))
            and manager.show("ActiveState")["ActiveState"] == "active"
        )
    )
    assert manager.show("NRestarts")["NRestarts"] == "1"
    send_line(ingest, {"event": "um.after_restart"})

    # Stop the daemon; the socket stays and starts it again on the next event.
    manager.systemctl("stop", "agent-telemetry.service")
    manager.wait_until(lambda: manager.show("ActiveState")["ActiveState"] == "inactive")
    send_line(ingest, {"event": "um.activates"})
    manager.wait_until(lambda: manager.show("ActiveState")["ActiveState"] == "active")
    manager.systemctl("stop", "agent-telemetry.service")
    manager.wait_until(lambda: manager.show("ActiveState")["ActiveState"] == "inactive")

    export = manager.run(str(AGENT_TELEMETRY), "export", "--format", "ndjson").stdout
    events = sorted(json.loads(line)["event"] for line in export.splitlines())
    assert events == ["um.activates", "um.after_restart", "um.before_crash", "um.http"]

    manager.run(str(AGENT_TELEMETRY), "service", "uninstall")
    unit_dir = manager.home / ".config/systemd/user"
    assert sorted(p.name for p in unit_dir.iterdir()) == [f"{HTTP_SOCKET}.d"]
    assert manager.show("LoadState")["LoadState"] == "not-found"
    assert not ingest.exists()  # RemoveOnStop=yes


def test_the_timer_flush_starts_a_stopped_daemon_and_reaches_the_backend(
    manager: UserManager,
) -> None:
    """The whole path a user gets from `service install` with a key in their shell and a
    portable AGENT_TELEMETRY_HOME: the key lands in the service's environment file, the units
    carry the home, and the flush timer uploads through api.sock while the daemon is stopped,
    starting it by socket activation."""
    backend = FakeHttpBackend(api_key="um-ingest-key").start()
    at_home = manager.home / "at"
    shell = {
        **manager.env,
        "AGENT_TELEMETRY_HOME": str(at_home),
        "TELEMETRY_ENDPOINT": backend.url,
        "TELEMETRY_API_KEY": "um-ingest-key",
        # Read by install for the timer only; the daemon keeps its own 1 h schedule, so
        # whatever reaches the backend below was sent by the timer's flush.
        "AGENT_TELEMETRY_UPLOAD_INTERVAL": "2s",
    }

    cli = cli_for(shell)

    run_dir = socket_drop_in(manager, at_home)
    at_home.mkdir()
    (at_home / "config.toml").write_text(f'idle_exit = "{QUIET}"\n')
    try:
        assert cli("enable").returncode == 0
        installed = cli("service", "install")
        assert installed.returncode == 0, installed.stderr
        assert "um-ingest-key" not in installed.stdout + installed.stderr
        # Hold the schedule while events arrive, so they are still pending when it fires;
        # a flush the timer started before (on a slow machine, still starting up) must end
        # first, or it would send them itself.
        manager.systemctl("stop", "agent-telemetry-flush.timer")
        manager.wait_until(
            lambda: (
                manager.show("ActiveState", unit="agent-telemetry-flush.service")
                == {"ActiveState": "inactive"}
            )
        )

        service_env = manager.show("Environment", "EnvironmentFiles")
        assert f"AGENT_TELEMETRY_HOME={at_home}" in service_env["Environment"]
        assert service_env["EnvironmentFiles"].startswith(f"{at_home}/service.env")

        for name in ("um.timer.one", "um.timer.two", "um.timer.three"):
            send_line(run_dir / "ingest.sock", {"event": name})
        manager.wait_until(
            lambda: json.loads(cli("status", "--json").stdout)["buffer"]["pending_upload"] == 3
        )
        first_start = started_at(manager)

        # Quiet now: the daemon exits by itself although events are pending, since its own
        # upload (hourly) is not due within the quiet period: the timer's flush is.
        manager.wait_until(lambda: manager.show("ActiveState")["ActiveState"] == "inactive")
        assert manager.show("Result", "NRestarts") == {"Result": "success", "NRestarts": "0"}
        assert (run_dir / "api.sock").exists()  # kept by the socket unit
        assert backend.snapshot() == []
        # status reads the buffer file; it must neither start the daemon nor call it missing.
        status = cli("status").stdout
        assert "not running; its sockets are open (socket activation)" in status
        assert manager.show("ActiveState")["ActiveState"] == "inactive"

        manager.systemctl("start", "agent-telemetry-flush.timer")
        backend.wait_for(lambda: len(backend.stored) == 3, timeout=60)
        flush = "agent-telemetry-flush.service"
        manager.wait_until(
            lambda: (
                manager.show("ActiveState", "Result", unit=flush)
                == {"ActiveState": "inactive", "Result": "success"}
                and manager.show("ExecMainExitTimestampMonotonic", unit=flush)[
                    "ExecMainExitTimestampMonotonic"
                ]
                != "0"
            ),
            timeout=60,
        )
        # The flush's connection to api.sock started the daemon again.
        assert started_at(manager) != first_start
        assert sorted(e["event"] for e in backend.stored.values()) == [
            "um.timer.one",
            "um.timer.three",
            "um.timer.two",
        ]
        assert json.loads(cli("status", "--json").stdout)["buffer"]["sent"] == 3
    finally:
        cli("service", "uninstall")
        backend.stop()


def test_a_quiet_daemon_exits_and_the_next_event_starts_it_again(manager: UserManager) -> None:
    """Socket-activated with a short `idle_exit`: the daemon ends itself when nothing
    happens, the socket unit keeps the sockets, and the next event starts it and is stored.
    In mode local the upload timer's flush does not start it at all."""
    at_home = manager.home / "at"
    shell = {**manager.env, "AGENT_TELEMETRY_HOME": str(at_home)}

    cli = cli_for(shell)

    run_dir = socket_drop_in(manager, at_home)
    at_home.mkdir()
    (at_home / "config.toml").write_text(f'idle_exit = "{QUIET}"\n')
    try:
        installed = cli("service", "install")
        assert installed.returncode == 0, installed.stderr
        # Started by install with the socket unit's sockets; quiet, it exits cleanly.
        manager.wait_until(lambda: started_at(manager) != "0")
        manager.wait_until(lambda: manager.show("ActiveState")["ActiveState"] == "inactive")
        assert manager.show("Result", "ExecMainStatus", "NRestarts") == {
            "Result": "success",
            "ExecMainStatus": "0",
            "NRestarts": "0",
        }
        assert manager.show("ActiveState", unit="agent-telemetry.socket") == {
            "ActiveState": "active"
        }
        first_start = started_at(manager)

        send_line(run_dir / "ingest.sock", {"event": "um.idle.wakes_it"})
        manager.wait_until(lambda: started_at(manager) != first_start)
        manager.wait_until(lambda: manager.show("ActiveState")["ActiveState"] == "inactive")
        export = cli("export", "--format", "ndjson").stdout
        assert [json.loads(line)["event"] for line in export.splitlines()] == ["um.idle.wakes_it"]

        # Mode local: the scheduled flush says so without starting the daemon.
        second_start = started_at(manager)
        flush = "agent-telemetry-flush.service"
        assert manager.systemctl("start", flush).returncode == 0  # oneshot: waits for it
        assert manager.show("Result", unit=flush) == {"Result": "success"}
        assert started_at(manager) == second_start
        assert manager.show("ActiveState")["ActiveState"] == "inactive"
    finally:
        cli("service", "uninstall")


def test_systemctl_reload_has_the_running_daemon_reread_its_config(manager: UserManager) -> None:
    """`systemctl --user reload agent-telemetry` is how a service is told to re-read its
    config: the same daemon (same pid) takes the new settings, as `agent-telemetry reload`
    and SIGHUP do, instead of systemd answering that the unit cannot reload."""
    at_home = manager.home / "at"
    shell = {**manager.env, "AGENT_TELEMETRY_HOME": str(at_home)}

    cli = cli_for(shell)

    def batch_size() -> int:
        return json.loads(cli("status", "--json").stdout)["upload"]["batch_size"]

    socket_drop_in(manager, at_home)
    at_home.mkdir()
    config = at_home / "config.toml"
    config.write_text("batch_size = 100\n")
    config.chmod(0o600)
    try:
        installed = cli("service", "install")
        assert installed.returncode == 0, installed.stderr
        manager.wait_until(lambda: manager.show("ActiveState")["ActiveState"] == "active")
        pid = manager.show("MainPID")["MainPID"]
        assert batch_size() == 100

        config.write_text("batch_size = 7\n")
        reloaded = manager.systemctl("reload", "agent-telemetry.service")
        assert reloaded.returncode == 0, reloaded.stderr
        manager.wait_until(lambda: batch_size() == 7)
        assert manager.show("MainPID", "ActiveState") == {"MainPID": pid, "ActiveState": "active"}
    finally:
        cli("service", "uninstall")


def test_a_daemon_started_by_hand_leaves_the_socket_units_sockets_alone(
    manager: UserManager,
) -> None:
    """With the service installed and its daemon gone quiet, `agent-telemetry daemon` typed
    in a terminal must not take the socket unit's socket files for its own (it removed them
    as stale, and again when it stopped): it refuses, says how to run the service, and the
    next event still starts the service and is stored."""
    at_home = manager.home / "at"
    shell = {**manager.env, "AGENT_TELEMETRY_HOME": str(at_home)}

    cli = cli_for(shell)

    run_dir = socket_drop_in(manager, at_home)
    at_home.mkdir()
    (at_home / "config.toml").write_text(f'idle_exit = "{QUIET}"\n')
    by_hand = None
    try:
        assert cli("service", "install").returncode == 0
        manager.wait_until(lambda: started_at(manager) != "0")
        manager.wait_until(lambda: manager.show("ActiveState")["ActiveState"] == "inactive")
        first_start = started_at(manager)

        by_hand = subprocess.Popen(
            [str(AGENT_TELEMETRY), "daemon"],
            env={**shell, "AGENT_TELEMETRY_HTTP_PORT": "off"},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        _, log = by_hand.communicate(timeout=20)
        assert by_hand.returncode == 3, log
        (line,) = log.splitlines()
        assert "agent-telemetry.socket" in json.loads(line)["reason"], line
        assert "systemctl --user start agent-telemetry.service" in line

        send_line(run_dir / "ingest.sock", {"event": "um.after_hand_start"})
        manager.wait_until(lambda: started_at(manager) != first_start)
        manager.wait_until(lambda: manager.show("ActiveState")["ActiveState"] == "inactive")
        export = cli("export", "--format", "ndjson").stdout
        assert [json.loads(x)["event"] for x in export.splitlines()] == ["um.after_hand_start"]
    finally:
        if by_hand is not None and by_hand.poll() is None:
            by_hand.send_signal(signal.SIGTERM)
            by_hand.wait(20)
        cli("service", "uninstall")


def test_install_refuses_while_a_daemon_started_by_hand_runs(manager: UserManager) -> None:
    """The service's daemon could not start beside one started by hand (one daemon per
    user), and the socket unit would take that daemon's socket files: install refuses,
    naming the daemon, writes nothing, and the daemon by hand keeps taking events."""
    at_home = manager.home / "at"
    shell = {**manager.env, "AGENT_TELEMETRY_HOME": str(at_home)}

    cli = cli_for(shell)

    run_dir = socket_drop_in(manager, at_home)
    by_hand = subprocess.Popen(
        [str(AGENT_TELEMETRY), "daemon"],
        env={**shell, "AGENT_TELEMETRY_HTTP_PORT": "off"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        manager.wait_until(lambda: json.loads(cli("status", "--json").stdout)["running"])
        installed = cli("service", "install")
        assert installed.returncode == 1, installed.stdout
        assert f"a daemon started by hand is running (pid {by_hand.pid})" in installed.stderr
        unit_dir = manager.home / ".config/systemd/user"
        assert sorted(p.name for p in unit_dir.iterdir()) == [f"{HTTP_SOCKET}.d"]
        dry = cli("service", "install", "--dry-run")
        assert f"(pid {by_hand.pid})" in dry.stderr and dry.returncode == 1

        send_line(run_dir / "ingest.sock", {"event": "um.by_hand"})
        by_hand.send_signal(signal.SIGTERM)
        assert by_hand.wait(30) == 0
        export = cli("export", "--format", "ndjson").stdout
        assert [json.loads(x)["event"] for x in export.splitlines()] == ["um.by_hand"]

        # With it stopped, install goes ahead; run again while the service's own daemon
        # runs (an upgrade), it is not refused.
        assert cli("service", "install").returncode == 0
        manager.wait_until(lambda: manager.show("ActiveState")["ActiveState"] == "active")
        again = cli("service", "install")
        assert again.returncode == 0, again.stderr
    finally:
        if by_hand.poll() is None:
            by_hand.kill()
            by_hand.wait()
        cli("service", "uninstall")


def test_a_taken_port_fails_only_the_http_socket_and_ingest_still_starts_the_daemon(
    manager: UserManager,
) -> None:
    """On a machine with several users the first one's daemon holds the loopback port. For
    the next user only the HTTP port's socket unit may fail: ingest.sock and api.sock are
    still held by their own unit, the install succeeds, an event sent to ingest.sock starts
    the daemon and is stored, and the daemon, started without a TCP socket, tries the port
    itself and runs on its sockets, saying why in `status` and `doctor`."""
    at_home = manager.home / "at"
    shell = {**manager.env, "AGENT_TELEMETRY_HOME": str(at_home)}
    cli = cli_for(shell)
    run_dir = at_home / "run"

    # Taken before any unit starts, by a program that is not the daemon (here the test).
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    port = holder.getsockname()[1]
    try:
        port_drop_in(manager, port)
        at_home.mkdir()
        # The same port in the config: the one the daemon tries itself when systemd passes
        # it none.
        (at_home / "config.toml").write_text(f"http_port = {port}\n")
        installed = cli("service", "install")
        assert installed.returncode == 0, installed.stdout + installed.stderr
        manager.wait_until(lambda: manager.show("ActiveState")["ActiveState"] == "active")
        assert manager.show("ActiveState", "Result", unit=HTTP_SOCKET) == {
            "ActiveState": "failed",
            "Result": "resources",
        }
        assert manager.show("ActiveState", unit="agent-telemetry.socket") == {
            "ActiveState": "active"
        }

        # Stopped, the daemon is started again by an event on ingest.sock, which it stores.
        stop_then_wake_by_ingest(manager, run_dir, "um.port_taken.ingest")
        manager.wait_until(
            lambda: cli("export", "--format", "ndjson").stdout.strip() != "", timeout=30
        )
        export = cli("export", "--format", "ndjson").stdout
        assert [json.loads(x)["event"] for x in export.splitlines()] == ["um.port_taken.ingest"]

        status = json.loads(cli("status", "--json").stdout)
        assert status["running"] and status["paths"]["http"] is None, status
        assert f"cannot listen on 127.0.0.1:{port}" in status["http_unavailable"]

        doctor = json.loads(cli("doctor", "--json").stdout)
        found = {check["name"]: check for check in doctor["checks"]}
        assert found["port"]["verdict"] == "fail"
        assert "the daemon runs on its sockets only" in found["port"]["detail"]
        assert found["service"]["verdict"] == "warn"
        assert f"{HTTP_SOCKET} failed" in found["service"]["detail"]

        service = json.loads(cli("service", "status", "--json").stdout)
        states = {unit["name"]: unit["state"] for unit in service["units"]}
        assert states[HTTP_SOCKET].startswith("failed"), states
        assert states["agent-telemetry.socket"].startswith("active"), states
        assert service["installed"] and service["running"] and service["outdated"] == []

        # Once the port is free, the next start of the service brings its unit up again and
        # the daemon serves the port systemd passes it.
        holder.close()
        assert manager.systemctl("restart", "agent-telemetry.service").returncode == 0
        assert manager.show("ActiveState", unit=HTTP_SOCKET) == {"ActiveState": "active"}
        assert post_event(port, {"event": "um.port_taken.http"}) == 202
        assert json.loads(cli("status", "--json").stdout)["http_unavailable"] is None
    finally:
        holder.close()
        cli("service", "uninstall")


# What agent-telemetry.socket was before the HTTP port moved to a unit of its own: one unit
# for both Unix sockets and the port.
OLD_SOCKET_UNIT = """[Unit]
Description=agent-telemetry sockets (ingest, API, localhost HTTP)

[Socket]
ListenStream={run_dir}/ingest.sock
ListenStream={run_dir}/api.sock
ListenStream=127.0.0.1:{port}
SocketMode=0600
DirectoryMode=0700
RemoveOnStop=yes

[Install]
WantedBy=sockets.target
"""


def test_install_over_units_with_the_port_in_the_socket_unit_moves_it_to_its_own(
    manager: UserManager,
) -> None:
    """Units from a version that listed the port in agent-telemetry.socket, running: status
    and doctor call them out of date, and `service install` replaces them while the daemon
    runs: the port moves to its own unit and the restarted daemon serves it from there."""
    at_home = manager.home / "at"
    shell = {**manager.env, "AGENT_TELEMETRY_HOME": str(at_home)}
    cli = cli_for(shell)
    run_dir = at_home / "run"
    port = free_port()
    port_drop_in(manager, port)
    at_home.mkdir()
    # The daemon's own choice matches the unit's: were it passed no port, it would not
    # reach for the machine's 7468.
    (at_home / "config.toml").write_text(f"http_port = {port}\n")
    try:
        assert cli("service", "install").returncode == 0
        units = manager.home / ".config/systemd/user"
        # Make them what the older version wrote, and run the daemon on them. The port's
        # unit goes first: loaded, a unit outlives its file.
        manager.systemctl("stop", "agent-telemetry.service")
        assert manager.systemctl("disable", "--now", HTTP_SOCKET).returncode == 0
        (units / HTTP_SOCKET).unlink()
        (units / "agent-telemetry.socket").write_text(
            OLD_SOCKET_UNIT.format(run_dir=run_dir, port=port)
        )
        service_unit = units / "agent-telemetry.service"
        lines = service_unit.read_text().splitlines(keepends=True)
        service_unit.write_text("".join(x for x in lines if not x.startswith("Sockets=")))
        manager.systemctl("daemon-reload")
        manager.systemctl("restart", "agent-telemetry.socket", "agent-telemetry.service")
        manager.wait_until(lambda: manager.show("ActiveState")["ActiveState"] == "active")
        assert manager.show("LoadState", unit=HTTP_SOCKET) == {"LoadState": "not-found"}
        assert post_event(port, {"event": "um.old_units"}) == 202

        outdated = json.loads(cli("service", "status", "--json").stdout)["outdated"]
        assert sorted(Path(path).name for path in outdated) == [
            HTTP_SOCKET,
            "agent-telemetry.service",
            "agent-telemetry.socket",
        ]
        doctor = json.loads(cli("doctor", "--json").stdout)
        (check,) = [c for c in doctor["checks"] if c["name"] == "service"]
        assert check["verdict"] == "warn" and "agent-telemetry.socket" in check["detail"]
        assert check["fix"].startswith("agent-telemetry service install")

        installed = cli("service", "install")
        assert installed.returncode == 0, installed.stdout + installed.stderr
        manager.wait_until(lambda: manager.show("ActiveState")["ActiveState"] == "active")
        assert manager.show("ActiveState", unit=HTTP_SOCKET) == {"ActiveState": "active"}
        listening = manager.systemctl("show", "agent-telemetry.socket", "--property=Listen")
        assert f"127.0.0.1:{port}" not in listening.stdout
        assert listening.stdout.count("(Stream)") == 2, listening.stdout
        assert post_event(port, {"event": "um.new_units"}) == 202
        status = json.loads(cli("status", "--json").stdout)
        assert status["paths"]["http"] == f"http://127.0.0.1:{port}"
        assert status["http_unavailable"] is None
        assert json.loads(cli("service", "status", "--json").stdout)["outdated"] == []
    finally:
        cli("service", "uninstall")


def tcp_listens(manager: UserManager) -> list[str]:
    """The TCP addresses this user's socket units listen on (`list-sockets` also lists
    the Unix ones, whose paths start with /)."""
    listed = manager.systemctl("list-sockets", "--all", "--no-legend", "--no-pager").stdout
    return [line.split()[0] for line in listed.splitlines() if line and line[0] not in "/@"]


def test_the_configured_port_is_the_one_systemd_listens_on(manager: UserManager) -> None:
    """`http_port` in the config is what otel-env points exporters at; installed, it is
    also what systemd listens on, and a POST there starts a stopped daemon and is stored.
    Moved in the config and installed again, the running daemon is moved with it; turned
    off, systemd listens on no TCP port at all, and ingest.sock still starts the daemon.
    At no point does this user's manager listen on 7468 (before, it always did)."""
    at_home = manager.home / "at"
    shell = {**manager.env, "AGENT_TELEMETRY_HOME": str(at_home)}
    cli = cli_for(shell)
    run_dir = at_home / "run"
    port = free_port()
    at_home.mkdir()
    config = at_home / "config.toml"
    config.write_text(f"http_port = {port}\n")
    try:
        installed = cli("service", "install")
        assert installed.returncode == 0, installed.stdout + installed.stderr
        manager.wait_until(lambda: manager.show("ActiveState")["ActiveState"] == "active")
        assert tcp_listens(manager) == [f"127.0.0.1:{port}"]
        assert f"http://127.0.0.1:{port}" in cli("otel-env").stdout

        # Stopped, the daemon is started by a POST to the configured port, which it stores.
        manager.systemctl("stop", "agent-telemetry.service")
        manager.wait_until(lambda: manager.show("ActiveState")["ActiveState"] == "inactive")
        first_start = started_at(manager)
        assert post_event(port, {"event": "um.config_port"}) == 202
        assert started_at(manager) != first_start
        assert json.loads(cli("status", "--json").stdout)["paths"]["http"] == (
            f"http://127.0.0.1:{port}"
        )

        # Moved while the daemon runs: install restarts it on the new port only.
        moved = free_port()
        config.write_text(f"http_port = {moved}\n")
        outdated = json.loads(cli("service", "status", "--json").stdout)["outdated"]
        assert [Path(path).name for path in outdated] == [HTTP_SOCKET]
        installed = cli("service", "install")
        assert installed.returncode == 0, installed.stdout + installed.stderr
        manager.wait_until(lambda: manager.show("ActiveState")["ActiveState"] == "active")
        assert tcp_listens(manager) == [f"127.0.0.1:{moved}"]
        assert post_event(moved, {"event": "um.moved_port"}) == 202
        with pytest.raises(ConnectionRefusedError):
            post_event(port, {"event": "um.old_port"})
        assert json.loads(cli("service", "status", "--json").stdout)["outdated"] == []

        # Off: no TCP listener anywhere, the unit gone, ingest.sock still starts the daemon.
        config.write_text('http_port = "off"\n')
        installed = cli("service", "install")
        assert installed.returncode == 0, installed.stdout + installed.stderr
        assert not (manager.home / ".config/systemd/user" / HTTP_SOCKET).exists()
        assert manager.show("LoadState", unit=HTTP_SOCKET) == {"LoadState": "not-found"}
        assert tcp_listens(manager) == []
        manager.wait_until(lambda: manager.show("ActiveState")["ActiveState"] == "active")
        with pytest.raises(ConnectionRefusedError):
            post_event(moved, {"event": "um.off"})
        stop_then_wake_by_ingest(manager, run_dir, "um.port_off.ingest")
        status = json.loads(cli("status", "--json").stdout)
        assert status["paths"]["http"] is None and status["http_unavailable"] is None, status
        service = json.loads(cli("service", "status", "--json").stdout)
        assert service["installed"] and service["enabled"] and service["outdated"] == []
        manager.wait_until(lambda: "um.port_off.ingest" in cli("export").stdout, timeout=30)
        export = cli("export", "--format", "ndjson").stdout
        assert sorted(json.loads(x)["event"] for x in export.splitlines()) == [
            "um.config_port",
            "um.moved_port",
            "um.port_off.ingest",
        ]
    finally:
        cli("service", "uninstall")
