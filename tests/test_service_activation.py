"""Socket activation: sockets passed exactly as systemd passes them come back by name.

`spawn_activated` is what systemd does for a `.socket` unit: listening sockets as fds 3, 4, …,
`LISTEN_FDS`/`LISTEN_FDNAMES`, and `LISTEN_PID` set to the pid of the process that runs (so a
wrapper sets it after fork, then execs the target in the same process).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

# Runs in the child: moves the inherited sockets to 3.. in order, sets the variables with
# its own pid, and execs the real program, which keeps that pid.
EXEC_WITH_LISTEN_FDS = r"""
import fcntl, os, sys
names, fds, argv = sys.argv[1], [int(fd) for fd in sys.argv[2].split(",")], sys.argv[3:]
# Park every fd above the target range first so no source is overwritten before it moves.
parked = [fcntl.fcntl(fd, fcntl.F_DUPFD, 100) for fd in fds]
for fd in fds:
    os.close(fd)
for index, fd in enumerate(parked):
    os.dup2(fd, 3 + index)
    os.close(fd)
os.environ["LISTEN_PID"] = str(os.getpid())
os.environ["LISTEN_FDS"] = str(len(parked))
if names != "-":
    os.environ["LISTEN_FDNAMES"] = names
os.execv(argv[0], argv)
"""


def spawn_activated(
    argv: Sequence[str],
    sockets: Sequence[socket.socket],
    names: Sequence[str] | None,
    env: dict[str, str] | None = None,
    **popen: object,
) -> subprocess.Popen[str]:
    """Start ``argv`` with ``sockets`` as LISTEN fds 3.. (``names=None``: no LISTEN_FDNAMES)."""
    fds = [s.fileno() for s in sockets]
    wrapper = [
        sys.executable,
        "-c",
        EXEC_WITH_LISTEN_FDS,
        ":".join(names) if names is not None else "-",
        ",".join(map(str, fds)),
        *argv,
    ]
    return subprocess.Popen(  # type: ignore[call-overload]
        wrapper, pass_fds=fds, env=env, text=True, **popen
    )


def listening_sockets(directory: Path) -> list[socket.socket]:
    """ingest.sock, api.sock and a loopback TCP port, bound and listening like systemd's."""
    made = []
    for name in ("ingest.sock", "api.sock"):
        unix = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        unix.bind(str(directory / name))
        unix.listen()
        made.append(unix)
    tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    tcp.bind(("127.0.0.1", 0))
    tcp.listen()
    made.append(tcp)
    return made


@pytest.fixture
def sockets(tmp_path: Path) -> Iterator[list[socket.socket]]:
    # AF_UNIX paths are limited to ~107 bytes; pytest's tmp_path can get close.
    made = listening_sockets(tmp_path)
    yield made
    for sock in made:
        sock.close()


# The child: adopts the sockets, reports what it got, then answers one connection on each
# with the name it filed the socket under — proof these are the very listening sockets.
CHILD = r"""
import json, os, socket, sys
from agent_telemetryd.service.activation import inherited_sockets
got = inherited_sockets()
report = {
    "names": sorted(got),
    "env_left": sorted(k for k in os.environ if k.startswith("LISTEN_")),
    "nonblocking": all(s.getblocking() is False for s in got.values()),
    "inheritable": any(os.get_inheritable(s.fileno()) for s in got.values()),
    "fds": {name: s.fileno() for name, s in got.items()},
}
print(json.dumps(report), flush=True)
for name, sock in sorted(got.items()):
    sock.setblocking(True)
    conn, _ = sock.accept()
    conn.sendall(name.encode())
    conn.close()
"""


def connect_and_read(sock: socket.socket) -> str:
    address = sock.getsockname()
    with socket.socket(sock.family, socket.SOCK_STREAM) as client:
        client.settimeout(10)
        client.connect(address)
        return client.recv(100).decode()


def run_child(sockets: list[socket.socket], names: Sequence[str] | None) -> tuple[dict, list]:
    child = spawn_activated([sys.executable, "-c", CHILD], sockets, names, stdout=subprocess.PIPE)
    try:
        assert child.stdout is not None
        report = json.loads(child.stdout.readline())
        # Connect in the child's accept order (sorted names) so it never blocks on another.
        by_name = dict(zip(["ingest", "api", "http"], sockets, strict=True))
        answers = [connect_and_read(by_name[name]) for name in report["names"]]
        assert child.wait(timeout=10) == 0
    finally:
        child.kill()
        child.wait()
    return report, answers


def test_named_sockets_come_back_by_name(sockets: list[socket.socket]) -> None:
    report, answers = run_child(sockets, ["ingest", "api", "http"])
    assert report["names"] == ["api", "http", "ingest"]
    assert report["fds"] == {"ingest": 3, "api": 4, "http": 5}
    # Each name is served by the socket systemd bound under that name.
    assert answers == report["names"]
    assert report["env_left"] == []
    assert report["nonblocking"] is True
    assert report["inheritable"] is False


def test_one_socket_unit_names_by_address(sockets: list[socket.socket]) -> None:
    """The shipped unit passes three fds all named after the unit; addresses tell them apart."""
    report, answers = run_child(sockets, ["agent-telemetry.socket"] * 3)
    assert report["fds"] == {"ingest": 3, "api": 4, "http": 5}
    assert answers == report["names"]


def test_no_fdnames_at_all(sockets: list[socket.socket]) -> None:
    report, _ = run_child(sockets, None)
    assert report["fds"] == {"ingest": 3, "api": 4, "http": 5}


def run_snippet(code: str, env: dict[str, str]) -> str:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("LISTEN_")}
    full_env.update(env)
    return subprocess.run(
        [sys.executable, "-c", code],
        env=full_env,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout.strip()


REPORT_NOTHING = (
    "import os; from agent_telemetryd.service.activation import inherited_sockets as f; "
    "print(f(), sorted(k for k in os.environ if k.startswith('LISTEN_')))"
)


def test_not_activated_is_an_empty_dict() -> None:
    assert run_snippet(REPORT_NOTHING, {}) == "{} []"


def test_sockets_meant_for_another_process_are_ignored_and_not_passed_on() -> None:
    """LISTEN_PID of a parent: not ours; the variables still go so our children don't bite."""
    env = {"LISTEN_PID": "1", "LISTEN_FDS": "3", "LISTEN_FDNAMES": "ingest:api:http"}
    assert run_snippet(REPORT_NOTHING, env) == "{} []"


def test_garbage_variables_are_ignored() -> None:
    env = {"LISTEN_PID": "self", "LISTEN_FDS": "many"}
    assert run_snippet(REPORT_NOTHING, env) == "{} []"


def test_a_plain_mapping_is_accepted_and_cleared() -> None:
    from agent_telemetryd.service.activation import inherited_sockets

    environ = {"LISTEN_PID": "1", "LISTEN_FDS": "1", "OTHER": "kept"}
    assert inherited_sockets(environ) == {}
    assert environ == {"OTHER": "kept"}


@pytest.mark.parametrize(
    ("family", "address"), [(socket.AF_INET, "0.0.0.0"), (socket.AF_INET6, "::")]
)
def test_the_daemon_refuses_an_inherited_tcp_socket_not_on_loopback(
    family: socket.AddressFamily, address: str
) -> None:
    """`ListenStream=7468` in a drop-in listens on every interface: the daemon must not serve it."""
    from tests.daemon_process import CLI, clean_environment, make_home

    home = make_home()  # short: socket paths must fit in 107 bytes
    run = home / "run"
    run.mkdir(mode=0o700)
    made = listening_sockets(run)
    made[2].close()
    made[2] = socket.socket(family, socket.SOCK_STREAM)
    made[2].bind((address, 0))
    made[2].listen()
    port = made[2].getsockname()[1]
    daemon = spawn_activated(
        [CLI, "daemon"],
        made,
        ["agent-telemetry.socket"] * 3,
        env=clean_environment(home),
        stderr=subprocess.PIPE,
    )
    try:
        code = daemon.wait(timeout=30)
        stderr = daemon.stderr.read() if daemon.stderr else ""
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait()
        for sock in made:
            sock.close()
        shutil.rmtree(home, ignore_errors=True)
    assert code == 3, stderr  # the startup-failure exit code
    shown = f"[{address}]:{port}" if ":" in address else f"{address}:{port}"
    assert f"listens on {shown}, not on loopback" in stderr, stderr


def test_a_passed_socket_where_nobody_looks_is_given_back_and_the_daemon_binds_its_own() -> None:
    """The manager's socket folder and the daemon's can part (a unit or plist written for
    another folder): serving the manager's socket would take nothing from the shims."""
    from tests.daemon_process import CLI, DaemonProcess, clean_environment, make_home
    from tests.test_idle_exit import eventually
    from tests.test_service_daemon import send_line

    home = make_home()
    elsewhere = home / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    made = listening_sockets(elsewhere)
    process = DaemonProcess(home, clean_environment(home))
    log = (home / "daemon.log").open("w")
    daemon = spawn_activated(
        [CLI, "daemon"],
        made,
        ["agent-telemetry.socket"] * 3,
        env=process.env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        eventually(
            lambda: (
                process.api_socket.exists()
                and process.cli("status", "--json", check=False).returncode == 0
            )
        )
        assert process.status()["idle_exit_seconds"] is None  # its own ingest.sock: no idle exit
        send_line(process.ingest_socket, {"event": "activation.rebound"})
        assert eventually(lambda: [e["event"] for e in process.export()]) == ["activation.rebound"]
        daemon.terminate()
        assert daemon.wait(timeout=30) == 0
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait()
        log.close()
        for sock in made:
            sock.close()
    text = (home / "daemon.log").read_text()
    shutil.rmtree(home, ignore_errors=True)
    assert f"the ingest socket passed by the service manager is {elsewhere}/ingest.sock" in text
