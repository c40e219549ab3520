"""launchd socket activation, as far as a machine without launchd can show it.

launchd itself is stood in for by tests/fakes/fake_launchd.c: a C `launch_activate_socket`
with libSystem's signature and contract (a malloc'd fd array the caller frees; ENOENT,
ESRCH, EALREADY), compiled here. The daemon's ctypes binding is called against it
unchanged, and the real daemon runs with it preloaded and with the sockets a rendered
LaunchAgent describes, bound the way launchd binds them. What only a Mac can check —
that libSystem's function answers as its manual says, that launchd binds the plist's
paths and starts the job on a connection — is listed in docs/service.md.
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import plistlib
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from agent_telemetryd.cli.api_client import ApiClient
from agent_telemetryd.idle import DEFAULT_IDLE_EXIT_SECONDS
from agent_telemetryd.service.activation import SOCKET_NAMES
from agent_telemetryd.service.install import find_executable
from agent_telemetryd.service.launchd_sockets import (
    LAUNCHD_SOCKETS_VARIABLE,
    activate_socket,
    launchd_fds,
)
from agent_telemetryd.service.render import UnitSettings, render_launchd_plist
from tests.daemon_process import CLI, DaemonProcess, clean_environment, make_home
from tests.fakes.http_backend import FakeHttpBackend
from tests.fakes.launchd import (
    SOCKETS_VARIABLE,
    OnDemandJob,
    bind_like_launchd,
    build_fake_launchd,
    launchd_environment,
)
from tests.test_idle_exit import eventually
from tests.test_service_activation import connect_and_read
from tests.test_service_daemon import send_line


@pytest.fixture(scope="module")
def fake_launchd(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_fake_launchd(tmp_path_factory.mktemp("launchd"))


@pytest.fixture(scope="module")
def loaded(fake_launchd: Path) -> ctypes.CDLL:
    library = ctypes.CDLL(str(fake_launchd))
    for name in ("fake_last_array", "fake_last_freed"):
        getattr(library, name).restype = ctypes.c_void_p
    return library


def as_libsystem(loaded: ctypes.CDLL) -> SimpleNamespace:
    """The fake's launch_activate_socket, with a free() that records what it was given."""
    return SimpleNamespace(
        launch_activate_socket=loaded.launch_activate_socket, free=loaded.fake_free
    )


# --- the ctypes binding against a C function of the same signature -------------------------
# The fake keeps its state for the life of the process, so each test asks for its own names.


def test_the_binding_returns_launchds_fds_in_order_and_frees_the_array(
    loaded: ctypes.CDLL, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(SOCKETS_VARIABLE, "one=7;two=8,9,10")
    assert activate_socket("two", as_libsystem(loaded)) == [8, 9, 10]
    handed_out = loaded.fake_last_array()
    assert handed_out is not None
    assert loaded.fake_last_freed() == handed_out  # the caller's free(3), on that pointer
    assert activate_socket("one", as_libsystem(loaded)) == [7]


@pytest.mark.parametrize(
    ("spec", "name", "code"),
    [
        (None, "three", errno.ESRCH),  # not a launchd job
        ("four=5", "absent", errno.ENOENT),  # no such key in Sockets
    ],
)
def test_launchds_errors_come_back_as_oserror_with_its_errno(
    loaded: ctypes.CDLL,
    monkeypatch: pytest.MonkeyPatch,
    spec: str | None,
    name: str,
    code: int,
) -> None:
    if spec is None:
        monkeypatch.delenv(SOCKETS_VARIABLE, raising=False)
    else:
        monkeypatch.setenv(SOCKETS_VARIABLE, spec)
    with pytest.raises(OSError) as raised:
        activate_socket(name, as_libsystem(loaded))
    assert raised.value.errno == code
    assert name in str(raised.value)


def test_a_socket_taken_twice_is_ealready(
    loaded: ctypes.CDLL, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(SOCKETS_VARIABLE, "five=11")
    assert activate_socket("five", as_libsystem(loaded)) == [11]
    with pytest.raises(OSError) as raised:
        activate_socket("five", as_libsystem(loaded))
    assert raised.value.errno == errno.EALREADY


def test_launchd_is_asked_only_when_the_launchagent_says_so(
    loaded: ctypes.CDLL, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(SOCKETS_VARIABLE, "six=12;seven=13")
    environ: dict[str, str] = {}
    assert launchd_fds(["six"], environ, as_libsystem(loaded)) == []
    assert activate_socket("six", as_libsystem(loaded)) == [12]  # so it was not taken above

    environ = {LAUNCHD_SOCKETS_VARIABLE: "1", "OTHER": "kept"}
    # A name the plist lacks (ENOENT) is left for the daemon to bind itself.
    assert launchd_fds(["seven", "missing"], environ, as_libsystem(loaded)) == [(13, "seven")]
    assert environ == {"OTHER": "kept"}  # never passed on to a child


# --- the daemon's process takes launchd's sockets ----------------------------------------

CHILD = r"""
import json, os, sys
from agent_telemetryd.service.activation import inherited_sockets
got = inherited_sockets()
print(json.dumps({
    "names": sorted(got),
    "marker_left": "AGENT_TELEMETRY_LAUNCHD_SOCKETS" in os.environ,
    "nonblocking": all(s.getblocking() is False for s in got.values()),
    "inheritable": any(os.get_inheritable(s.fileno()) for s in got.values()),
}), flush=True)
for name, sock in sorted(got.items()):
    sock.setblocking(True)
    conn, _ = sock.accept()
    conn.sendall(name.encode())
    conn.close()
"""


@pytest.fixture
def run_dir() -> Iterator[Path]:
    home = make_home()  # short: socket paths must fit in 104 bytes on macOS, 107 here
    (home / "run").mkdir(mode=0o700)
    yield home / "run"
    shutil.rmtree(home, ignore_errors=True)


def plist_for(run_dir: Path, http_port: int | None) -> dict[str, Any]:
    settings = UnitSettings(
        executable=find_executable(),
        env_file=run_dir.parent / "service.env",
        log_dir=run_dir.parent / "logs",
        runtime_dir=run_dir,
        http_listen=None if http_port is None else ("127.0.0.1", http_port),
    )
    return plistlib.loads(render_launchd_plist(settings).encode())


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_adopted_by_name_as_launchd_hands_them_over(fake_launchd: Path, run_dir: Path) -> None:
    """The child asks launchd for each name; each socket serves under the name it was held."""
    plist = plist_for(run_dir, free_port())
    held = bind_like_launchd(plist["Sockets"])
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith("LISTEN_")}
        env.update(launchd_environment(fake_launchd, held))
        fds = [s.fileno() for socks in held.values() for s in socks]
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD], pass_fds=fds, env=env, stdout=subprocess.PIPE, text=True
        )
        try:
            assert child.stdout is not None
            report = json.loads(child.stdout.readline())
            answers = [connect_and_read(held[name][0]) for name in report["names"]]
            assert child.wait(timeout=10) == 0
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
    finally:
        for socks in held.values():
            for sock in socks:
                sock.close()
    assert report["names"] == sorted(SOCKET_NAMES)
    assert answers == report["names"]
    assert report["marker_left"] is False
    assert report["nonblocking"] is True and report["inheritable"] is False


class LaunchdJob:
    """The real daemon, started the way launchd starts the rendered LaunchAgent's job."""

    def __init__(self, fake_launchd: Path, run_dir: Path, env: dict[str, str]) -> None:
        self.home = run_dir.parent
        self.plist = plist_for(run_dir, free_port())
        self.held = bind_like_launchd(self.plist["Sockets"])
        # The CLI runs without the fake: only the job is launchd's.
        self.process = DaemonProcess(self.home, clean_environment(self.home, env))
        self.fake_launchd = fake_launchd

    def start(self) -> subprocess.Popen[bytes]:
        env = {**self.process.env, **self.plist["EnvironmentVariables"]}
        env.update(launchd_environment(self.fake_launchd, self.held))
        log = (self.home / "daemon.log").open("ab")
        fds = [s.fileno() for socks in self.held.values() for s in socks]
        try:
            return subprocess.Popen([CLI, "daemon"], pass_fds=fds, env=env, stdout=log, stderr=log)
        finally:
            log.close()

    def logged(self, event: str) -> list[dict[str, Any]]:
        lines = (self.home / "daemon.log").read_text().splitlines()
        return [json.loads(x) for x in lines if x.startswith("{") and f'"{event}"' in x]

    def close(self) -> None:
        for socks in self.held.values():
            for sock in socks:
                sock.close()


@pytest.fixture
def launchd_job(fake_launchd: Path, run_dir: Path) -> Iterator[Any]:
    made: list[tuple[LaunchdJob, list[subprocess.Popen[bytes]]]] = []

    def make(env: dict[str, str]) -> LaunchdJob:
        made.append((LaunchdJob(fake_launchd, run_dir, env), []))
        return made[-1][0]

    yield make
    for job, _ in made:
        job.close()


def test_the_launchagents_daemon_serves_launchds_sockets_and_idles_out_by_default(
    launchd_job: Any,
) -> None:
    job = launchd_job({})
    daemon = job.start()
    try:
        status = eventually(lambda: _running_status(job.process))
        # Socket-activated: the default quiet period applies, as under systemd.
        assert status["idle_exit_seconds"] == DEFAULT_IDLE_EXIT_SECONDS
        port = job.held["http"][0].getsockname()[1]
        assert status["paths"]["http"] == f"http://127.0.0.1:{port}"
        send_line(job.home / "run" / "ingest.sock", {"event": "launchd.taken"})
        assert eventually(lambda: [e["event"] for e in job.process.export()]) == ["launchd.taken"]
        daemon.terminate()
        assert daemon.wait(timeout=30) == 0
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait()
    # launchd's socket files are launchd's: the daemon leaves them for the next start.
    assert (job.home / "run" / "ingest.sock").exists()
    assert (job.home / "run" / "api.sock").exists()


def test_after_an_idle_exit_launchds_socket_keeps_the_next_event_for_the_next_start(
    launchd_job: Any,
) -> None:
    job = launchd_job({"AGENT_TELEMETRY_IDLE_EXIT": "1s"})
    first = job.start()
    try:
        assert first.wait(timeout=30) == 0  # clean: KeepAlive's SuccessfulExit=false won't restart
        assert job.logged("idle_exit")
        # What launchd does next: the socket stays, an agent writes to it...
        send_line(job.home / "run" / "ingest.sock", {"event": "launchd.after_idle"})
        # ...and the connection starts the job again, which takes what waits.
        second = job.start()
        try:
            assert second.wait(timeout=30) == 0
        finally:
            if second.poll() is None:
                second.kill()
                second.wait()
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    assert [e["event"] for e in job.process.export()] == ["launchd.after_idle"]


def test_not_a_launchd_job_the_daemon_binds_its_own_sockets_and_never_idles_out(
    fake_launchd: Path, run_dir: Path
) -> None:
    """The plist's variable in a shell, say: launchd answers ESRCH and nothing is lost."""
    home = run_dir.parent
    process = DaemonProcess(home, clean_environment(home))
    env = {**process.env, LAUNCHD_SOCKETS_VARIABLE: "1", "LD_PRELOAD": str(fake_launchd)}
    log = (home / "daemon.log").open("ab")
    daemon = subprocess.Popen([CLI, "daemon"], env=env, stdout=log, stderr=log)
    log.close()
    try:
        status = eventually(lambda: _running_status(process))
        assert status["idle_exit_seconds"] is None
        send_line(process.ingest_socket, {"event": "launchd.self_bound"})
        assert eventually(lambda: [e["event"] for e in process.export()]) == ["launchd.self_bound"]
        daemon.terminate()
        assert daemon.wait(timeout=30) == 0
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait()
    text = (home / "daemon.log").read_text()
    assert "launchd did not hand over sockets" in text and "ESRCH" in text, text
    assert not process.ingest_socket.exists()  # its own, so removed at exit


def _running_status(process: DaemonProcess) -> dict[str, Any] | None:
    if not process.api_socket.exists():
        return None
    result = process.cli("status", "--json", check=False)
    if result.returncode != 0:
        return None
    status = json.loads(result.stdout)
    return status if status.get("running") else None


def test_a_daemon_launchd_did_not_start_never_loads_ctypes(daemon: DaemonProcess) -> None:
    """The binding's cost (ctypes) is paid only when the LaunchAgent asks for it."""
    answer = ApiClient(daemon.api_socket).json("GET", "/v1/debug/modules?under=agent_telemetryd")
    assert "agent_telemetryd" in answer["modules"]
    assert "ctypes" not in answer["modules"]


def test_the_flush_agent_starts_an_idle_daemon_through_launchds_api_socket(
    fake_launchd: Path, run_dir: Path
) -> None:
    """The StartInterval agent runs `agent-telemetry flush`; with the daemon gone after an
    idle exit, its connection to api.sock is what makes launchd start it, as on Linux."""
    backend = FakeHttpBackend(api_key="launchd-key").start()
    home = run_dir.parent
    plist = plist_for(run_dir, free_port())
    held = bind_like_launchd(plist["Sockets"])
    process = DaemonProcess(
        home,
        clean_environment(
            home,
            {
                "AGENT_TELEMETRY_IDLE_EXIT": "1s",
                "AGENT_TELEMETRY_MODE": "upload",
                "AGENT_TELEMETRY_RATE_LIMIT": "off",
                "TELEMETRY_ENDPOINT": backend.url,
                "TELEMETRY_API_KEY": "launchd-key",
            },
        ),
    )
    job_env = {**process.env, **plist["EnvironmentVariables"]}
    job_env.update(launchd_environment(fake_launchd, held))
    launchd = OnDemandJob([CLI, "daemon"], held, job_env, home / "daemon.log").start()
    try:
        send_line(process.ingest_socket, {"event": "launchd.flushed"})  # starts the job
        eventually(lambda: launchd.exits)  # ...which stores it and idles out
        assert launchd.exits == [0] and backend.stored == {}
        flushed = process.cli("flush", "--json")  # the flush agent's command
        assert json.loads(flushed.stdout)["events_sent"] == 1
        assert [e["event"] for e in backend.stored.values()] == ["launchd.flushed"]
        assert eventually(lambda: len(launchd.exits) == 2)  # it idled out again
    finally:
        launchd.stop()
        backend.stop()
        for socks in held.values():
            for sock in socks:
                sock.close()
    assert launchd.exits == [0, 0]


def test_a_name_the_plist_lacks_is_quiet_but_nothing_handed_over_is_said(
    loaded: ctypes.CDLL, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """No `http` entry (TCP off) is a plist choice; no socket at all is worth a log line."""
    monkeypatch.setenv(SOCKETS_VARIABLE, "eight=14")
    environ = {LAUNCHD_SOCKETS_VARIABLE: "1"}
    with caplog.at_level("WARNING"):
        assert launchd_fds(["eight", "no-tcp"], environ, as_libsystem(loaded)) == [(14, "eight")]
    assert caplog.records == []
    environ = {LAUNCHD_SOCKETS_VARIABLE: "1"}
    with caplog.at_level("WARNING"):
        assert launchd_fds(["gone", "also-gone"], environ, as_libsystem(loaded)) == []
    assert "launchd did not hand over sockets (gone: ENOENT, also-gone: ENOENT)" in caplog.text
