"""A stand-in for launchd's `launch_activate_socket` (fake_launchd.c), built for the tests.

On macOS the daemon calls the function in libSystem; on Linux nothing provides it, so the
tests compile this C file (same signature and contract) into a shared library and either
load it with ctypes or preload it (`LD_PRELOAD`) into the real daemon, whose unchanged
binding then calls it exactly as it calls libSystem's.
"""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from tests.tools import required_tool

SOURCE = Path(__file__).with_name("fake_launchd.c")
# The variable the fake reads: which descriptors "launchd" holds under which name.
SOCKETS_VARIABLE = "FAKE_LAUNCHD_SOCKETS"


def build_fake_launchd(directory: Path) -> Path:
    """Compile fake_launchd.c into ``directory``; a missing C compiler fails loudly."""
    compiler = required_tool("gcc libc6-dev", "cc", "gcc")
    library = directory / "libfake_launchd.so"
    subprocess.run(
        [compiler, "-shared", "-fPIC", "-O2", "-Wall", "-Werror", "-o", str(library), str(SOURCE)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    return library


def sockets_spec(held: Mapping[str, Sequence[socket.socket]]) -> str:
    """The value of FAKE_LAUNCHD_SOCKETS for sockets held under these names."""
    return ";".join(
        f"{name}={','.join(str(sock.fileno()) for sock in socks)}" for name, socks in held.items()
    )


def launchd_environment(
    library: Path, held: Mapping[str, Sequence[socket.socket]]
) -> dict[str, str]:
    """What a process started by the LaunchAgent sees, with this fake as launchd."""
    from agent_telemetryd.service.launchd_sockets import LAUNCHD_SOCKETS_VARIABLE

    return {
        "LD_PRELOAD": str(library),
        SOCKETS_VARIABLE: sockets_spec(held),
        LAUNCHD_SOCKETS_VARIABLE: "1",
    }


def bind_like_launchd(
    entries: Mapping[str, Mapping[str, object]],
) -> dict[str, list[socket.socket]]:
    """Bind a plist's ``Sockets`` the way launchd does at load, before the job runs.

    Handles the entries the daemon's LaunchAgent uses: ``SockPathName`` (a Unix stream
    socket, chmod ``SockPathMode``) and ``SockNodeName``/``SockServiceName`` (TCP).
    """
    held: dict[str, list[socket.socket]] = {}
    for name, entry in entries.items():
        assert entry.get("SockType", "stream") == "stream", entry
        if "SockPathName" in entry:
            path = str(entry["SockPathName"])
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.bind(path)
            mode = entry.get("SockPathMode")
            if isinstance(mode, int):
                Path(path).chmod(mode)
        else:
            family = socket.AF_INET6 if entry.get("SockFamily") == "IPv6" else socket.AF_INET
            sock = socket.socket(family, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((str(entry["SockNodeName"]), int(str(entry["SockServiceName"]))))
        sock.listen()
        held[name] = [sock]
    return held


class OnDemandJob:
    """launchd's part for one job: hold its sockets, start it when a connection arrives.

    While the job runs the sockets are its own; once it exits they are watched again, so
    the next connection starts it again (what `KeepAlive` `SuccessfulExit=false` leaves
    to the sockets after a clean exit). ``exits`` lists each run's exit status.
    """

    def __init__(
        self,
        argv: Sequence[str],
        held: Mapping[str, Sequence[socket.socket]],
        env: Mapping[str, str],
        log: Path,
    ) -> None:
        import threading

        self.argv = list(argv)
        self.held = held
        self.env = dict(env)
        self.log = log
        self.exits: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def start(self) -> OnDemandJob:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=60)

    def _watch(self) -> None:
        import select

        socks = [sock for group in self.held.values() for sock in group]
        while not self._stop.is_set():
            readable, _, _ = select.select(socks, [], [], 0.05)
            if readable:
                self.exits.append(self._run_once())

    def _run_once(self) -> int:
        fds = [sock.fileno() for group in self.held.values() for sock in group]
        with self.log.open("ab") as log:
            job = subprocess.Popen(self.argv, pass_fds=fds, env=self.env, stdout=log, stderr=log)
        while True:
            try:
                return job.wait(timeout=0.1)
            except subprocess.TimeoutExpired:
                if self._stop.is_set():
                    job.terminate()
                    return job.wait()
