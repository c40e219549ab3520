"""Connection budgets and timeouts against the real daemon: a flood of idle TCP connections
from another process never reaches the owner's Unix sockets, and idle ones are closed."""

from __future__ import annotations

import json
import resource
import select
import socket
import subprocess
import sys
import textwrap
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from agent_telemetryd.fdlimit import RESERVED, fit_budgets
from tests.conftest import DaemonFactory
from tests.daemon_process import DaemonProcess, make_home
from tests.test_daemon_ingest import post_events, wait_for_rows

FLOOD = 2000
WAVE = 250

# Another process holding idle connections (connected, never sending). On "open N" it
# opens N more and prints how many it holds; on "watch" it waits until the daemon has
# closed every one and prints what it saw.
FLOODER = textwrap.dedent(
    """
    import json, resource, select, socket, sys, time
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    port = int(sys.argv[1])
    socks, poll, failed = {}, select.poll(), 0
    for command in sys.stdin:
        if command.startswith("open"):
            wave = []
            for _ in range(int(command.split()[1])):
                s = socket.socket()
                s.setblocking(False)
                s.connect_ex(("127.0.0.1", port))
                socks[s.fileno()] = s
                wave.append(s.fileno())
                poll.register(s.fileno(), select.POLLOUT)
            connecting, deadline = set(wave), time.monotonic() + 60
            while connecting and time.monotonic() < deadline:
                for fd, _ in poll.poll(1000):
                    if fd in connecting:
                        connecting.discard(fd)
                        poll.unregister(fd)
                        failed += bool(socks[fd].getsockopt(socket.SOL_SOCKET, socket.SO_ERROR))
            print(json.dumps({"held": len(socks), "failed": failed + len(connecting)}))
            sys.stdout.flush()
            continue
        for fd in socks:
            poll.register(fd, select.POLLIN)
        open_fds, busy, deadline = set(socks), 0, time.monotonic() + 60
        while open_fds and time.monotonic() < deadline:
            for fd, _ in poll.poll(1000):
                if fd not in open_fds:
                    continue
                try:
                    data = socks[fd].recv(4096)
                except OSError:
                    data = b""
                busy += data.startswith(b"HTTP/1.1 503")
                if not data or b"Connection: close" in data:
                    open_fds.discard(fd)
                    poll.unregister(fd)
        print(json.dumps({"closed_by_daemon": len(socks) - len(open_fds), "answered_503": busy}))
        break
    """
)


def seen_by_daemon(daemon: DaemonProcess) -> int:
    tcp = daemon.status()["connections"]["tcp"]
    return int(tcp["open"] + tcp["refused"] + tcp["timed_out"])


def flood(daemon: DaemonProcess, flooder: subprocess.Popen[str]) -> None:
    """Open FLOOD connections in waves, each taken off the listen queue by the daemon
    before the next: a queue that overflows leaves TCP connections only the client
    believes in (SYN cookies), which the daemon could never close."""
    assert flooder.stdin is not None and flooder.stdout is not None
    for held in range(WAVE, FLOOD + 1, WAVE):
        flooder.stdin.write(f"open {WAVE}\n")
        flooder.stdin.flush()
        assert json.loads(flooder.stdout.readline()) == {"held": held, "failed": 0}
        deadline = time.monotonic() + 60
        while seen_by_daemon(daemon) < held:
            assert time.monotonic() < deadline, daemon.status()["connections"]
            time.sleep(0.05)


AGENT = textwrap.dedent(
    """
    import json
    from agent_telemetry import track, flush
    for i in range(200):
        track("owner.during.flood", {"i": i})
    print(json.dumps({"flushed": flush(20)}))
    """
)


def file_limits(pid: int) -> tuple[int, int]:
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            soft, hard = line.split()[3:5]
            return int(soft), int(hard)
    raise AssertionError("no open-files line in /proc/PID/limits")


def limited_daemon(
    daemon_factory: DaemonFactory, soft: int, hard: int, config: str = ""
) -> DaemonProcess:
    home = make_home()
    (home / "config.toml").write_text(config)
    daemon = daemon_factory({"AGENT_TELEMETRY_RATE_LIMIT": "off"}, start=False, home=home)
    daemon.preexec_fn = lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    return daemon.start()


def test_the_daemon_raises_its_soft_file_limit_to_the_hard_one(
    daemon_factory: DaemonFactory,
) -> None:
    daemon = limited_daemon(daemon_factory, 1024, 4096)
    assert daemon.proc is not None
    assert file_limits(daemon.proc.pid) == (4096, 4096)
    assert daemon.status()["file_limit"] == {"soft": 4096, "hard": 4096}


def test_a_tcp_flood_leaves_ingest_sock_and_the_cli_to_the_owner_and_idle_ones_go(
    daemon_factory: DaemonFactory,
) -> None:
    # systemd's default soft limit, here also the hard one, so the daemon cannot raise it.
    daemon = limited_daemon(
        daemon_factory, 1024, 1024, "[limits]\nidle_timeout = 2\nheader_timeout = 2\n"
    )
    assert daemon.proc is not None
    assert file_limits(daemon.proc.pid) == (1024, 1024)
    tcp_cap = daemon.status()["connections"]["tcp"]["cap"]
    assert tcp_cap < 1024 // 3  # each listener's budget fits under the limit with the others
    port = daemon.http_url().rsplit(":", 1)[1]
    flooder = subprocess.Popen(
        [sys.executable, "-c", FLOODER, port],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert flooder.stdout is not None and flooder.stdin is not None
        flood(daemon, flooder)

        # The owner's agent still delivers over ingest.sock, and the CLI still answers.
        agent = subprocess.run(
            [sys.executable, "-c", AGENT],
            env=daemon.env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert agent.returncode == 0, agent.stderr
        assert json.loads(agent.stdout) == {"flushed": True}
        assert wait_for_rows(daemon, 200)["buffer"]["events"] == 200
        tcp = daemon.status()["connections"]["tcp"]
        assert tcp["peak"] == tcp_cap and tcp["refused"] > 0  # the budget was full

        # Every idle connection is closed: over the budget at once (with a 503), the ones
        # held when their idle timeout passes, making room for the next.
        flooder.stdin.write("watch\n")
        flooder.stdin.flush()
        seen = json.loads(flooder.stdout.readline())
        assert seen["closed_by_daemon"] == FLOOD
        assert flooder.wait(30) == 0
    finally:
        flooder.kill()
        flooder.wait()
    tcp = daemon.status()["connections"]["tcp"]
    assert tcp["open"] == 0 and tcp["peak"] == tcp_cap
    assert tcp["refused"] + tcp["timed_out"] == FLOOD
    assert tcp["timed_out"] >= tcp_cap
    assert seen["answered_503"] == tcp["refused"]
    assert daemon.status()["running"] is True


def dribble(port: int, head: bytes, stop: threading.Event) -> bool:
    """Send `head`, then one byte of more headers at a time until the daemon hangs up;
    True when it did."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(head)
        while not stop.is_set():
            try:
                sock.sendall(b"X")
            except OSError:
                return True
            readable, _, _ = select.select([sock], [], [], 0.2)
            if readable:
                try:
                    return sock.recv(1) == b""
                except OSError:
                    return True
    return False


def test_dribbled_headers_and_stalled_bodies_are_cut_at_their_timeouts(
    daemon_factory: DaemonFactory,
) -> None:
    daemon = limited_daemon(
        daemon_factory, 4096, 4096, "[limits]\nheader_timeout = 1\nbody_timeout = 1\n"
    )
    port = int(daemon.http_url().rsplit(":", 1)[1])
    heads = [b"POST /v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: "] * 20 + [
        b"POST /v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100000\r\n\r\n{"
    ] * 20
    stop = threading.Event()
    with ThreadPoolExecutor(len(heads)) as pool:
        outcomes = pool.map(lambda head: dribble(port, head, stop), heads, timeout=60)
        try:
            assert all(outcomes)  # every one was hung up on, none left to dribble on
        finally:
            stop.set()
    tcp = daemon.status()["connections"]["tcp"]
    assert tcp["timed_out"] == len(heads) and tcp["open"] == 0
    # A request that takes its time in between is still served.
    assert post_events(daemon.http_url(), [{"event": "after.slow.clients"}])[0] == 202


def test_budgets_shrink_in_proportion_only_when_they_would_not_fit() -> None:
    wanted = {"api": 256, "ingest": 256, "tcp": 256}
    assert fit_budgets(wanted, soft_limit=524288, accept_burst=128) == wanted
    fitted = fit_budgets(wanted, soft_limit=1024, accept_burst=128)
    assert fitted == {"api": 192, "ingest": 192, "tcp": 192}
    assert sum(fitted.values()) + 3 * 128 + RESERVED <= 1024
