"""Socket activation with idle exit: what a quiet daemon costs, and how soon it is back.

The bench plays systemd's part: it binds ingest.sock and api.sock itself, and when a
connection waits on one while no daemon runs, it starts the daemon with them (LISTEN_FDS,
as a socket unit does). Each cycle sends one event into the held socket, measures from
the send until the buffer has the event committed (startup included), then waits for the
daemon to exit by itself (`idle_exit`). The first cycle is a cold start (a new buffer);
the others come after an idle exit, the case a user meets every time an agent wakes the
machine's telemetry up. The anchor is `python -c pass`, measured in the same run.
"""

from __future__ import annotations

import contextlib
import os
import select
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from agent_telemetry._wire import encode_event, uuid7
from bench import fixtures
from bench.report import Row, median
from tests.daemon_process import CLI, clean_environment, make_home

SECTION = "activation"

# Runs in the child, as systemd's exec does: the sockets become fds 3.., LISTEN_PID is the
# child's own pid, then the daemon is exec'd in the same process.
_EXEC_WITH_LISTEN_FDS = r"""
import fcntl, os, sys
fds = [int(fd) for fd in sys.argv[1].split(",")]
# Park every fd above the target range first so no source is overwritten before it moves.
parked = [fcntl.fcntl(fd, fcntl.F_DUPFD, 100) for fd in fds]
for fd in fds:
    os.close(fd)
for index, fd in enumerate(parked):
    os.dup2(fd, 3 + index)
    os.close(fd)
os.environ["LISTEN_PID"] = str(os.getpid())
os.environ["LISTEN_FDS"] = str(len(fds))
os.environ["LISTEN_FDNAMES"] = ":".join(["agent-telemetry.socket"] * len(fds))
os.execv(sys.argv[2], sys.argv[2:])
"""


class SocketUnit:
    """ingest.sock and api.sock held the way agent-telemetry.socket holds them."""

    def __init__(self, idle_exit: str) -> None:
        self.home = make_home()
        run = self.home / "run"
        run.mkdir(mode=0o700)
        self.sockets = []
        for name in ("ingest.sock", "api.sock"):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.bind(str(run / name))
            sock.listen(128)
            self.sockets.append(sock)
        self.ingest = run / "ingest.sock"
        self.database = self.home / "data" / "buffer.sqlite3"
        self.env = clean_environment(
            self.home,
            {"AGENT_TELEMETRY_HTTP_PORT": "off", "AGENT_TELEMETRY_IDLE_EXIT": idle_exit},
        )
        self.daemon: subprocess.Popen[bytes] | None = None

    def start_when_a_connection_waits(self, timeout: float = 10.0) -> None:
        readable, _, _ = select.select(self.sockets, [], [], timeout)
        if not readable:
            raise TimeoutError("nothing connected to the held sockets")
        fds = [s.fileno() for s in self.sockets]
        self.daemon = subprocess.Popen(
            [sys.executable, "-c", _EXEC_WITH_LISTEN_FDS, ",".join(map(str, fds)), CLI, "daemon"],
            pass_fds=fds,
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def close(self) -> None:
        if self.daemon is not None and self.daemon.poll() is None:
            self.daemon.kill()
            self.daemon.wait()
        for sock in self.sockets:
            sock.close()
        shutil.rmtree(self.home, ignore_errors=True)


def _committed(database: Path, uuid: str) -> bool:
    if not database.exists():
        return False
    conn = fixtures.read_only(database)
    try:
        return conn.execute("SELECT 1 FROM events WHERE uuid = ?", (uuid,)).fetchone() is not None
    except Exception:
        return False  # the daemon is still creating the file
    finally:
        conn.close()


def cycle(unit: SocketUnit, idle_seconds: float) -> dict[str, Any]:
    """One event into the held socket: send -> committed, then the quiet exit."""
    uuid = uuid7()
    sent = time.monotonic()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as agent:
        agent.connect(str(unit.ingest))
        agent.sendall(encode_event("bench.wake", {"n": 1}, uuid=uuid, agent="bench"))
    unit.start_when_a_connection_waits()
    while not _committed(unit.database, uuid):
        if time.monotonic() - sent > 30:
            raise TimeoutError("the event sent to the held socket was never committed")
        time.sleep(0.002)
    committed = time.monotonic()
    assert unit.daemon is not None
    try:
        code = unit.daemon.wait(timeout=idle_seconds + 30)
        exited_by_itself, rss_between = True, 0.0
    except subprocess.TimeoutExpired:  # a daemon without idle exit: stop it as systemd would
        rss_between = _rss_mb(unit.daemon.pid)  # what it holds between bursts
        unit.daemon.terminate()
        code = unit.daemon.wait(timeout=30)
        exited_by_itself = False
    return {
        "to_commit": committed - sent,
        "exit_after": time.monotonic() - committed,
        "exit_code": code,
        "idle_exit": exited_by_itself,
        "rss_between_mb": rss_between,
    }


def _rss_mb(pid: int) -> float:
    """Resident memory of `pid` now: 0 once the process is gone."""
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def _bare_interpreter() -> float:
    start = time.monotonic()
    subprocess.run([sys.executable, "-c", "pass"], check=True)
    return time.monotonic() - start


def run(quick: bool) -> list[Row]:
    idle_seconds = 0.5 if quick else 2.0
    cycles = 2 if quick else 6
    unit = SocketUnit(f"{idle_seconds}s")
    try:
        results = [cycle(unit, idle_seconds) for _ in range(cycles)]
    finally:
        unit.close()
    bare = median(_bare_interpreter() for _ in range(3)) * 1000
    warm = [r["to_commit"] * 1000 for r in results[1:]]
    all_exited = all(r["idle_exit"] and r["exit_code"] == 0 for r in results)
    between = max(r["rss_between_mb"] for r in results)
    return [
        Row(
            SECTION,
            "event sent -> committed, daemon started by it after an idle exit",
            median(warm),
            "ms",
            "python -c pass",
            bare,
            median(warm) / bare,
            "< 500 ms",
            median(warm) < 500,
            note=f"median of {len(warm)} wake-ups; the daemon's own start included",
        ),
        Row(
            SECTION,
            "event sent -> committed, first start (new buffer)",
            results[0]["to_commit"] * 1000,
            "ms",
            "python -c pass",
            bare,
            results[0]["to_commit"] * 1000 / bare,
        ),
        Row(
            SECTION,
            "daemon RSS between bursts",
            between,
            "MB",
            target="0 (exited)",
            met=all_exited and between == 0,
            note=(
                f"idle_exit {idle_seconds:g} s: exited by itself with status 0 in"
                f" {sum(r['idle_exit'] for r in results)} of {cycles} cycles, median"
                f" {median(r['exit_after'] for r in results):.2f} s after its event committed"
            ),
        ),
    ]


if __name__ == "__main__":
    from bench.report import format_table

    print(format_table(run("--quick" in sys.argv)))
    os._exit(0)
