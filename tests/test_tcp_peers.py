"""Loopback TCP is reachable by every local user: only the owner's connections get in,
told apart by the kernel's socket table, or by the per-install token where asked for."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from agent_telemetryd.receivers import tcp_peer
from tests.conftest import DaemonFactory
from tests.daemon_process import DaemonProcess, make_home
from tests.test_daemon_ingest import post_events, wait_for_rows

OTHER_UID = 65534  # nobody

FOREIGN_POST = """
import sys, urllib.error, urllib.request
request = urllib.request.Request(
    sys.argv[1] + "/v1/events", data=b'{"event": "from.another.user"}', method="POST",
    headers={"Content-Type": "application/json"},
)
try:
    with urllib.request.urlopen(request, timeout=30) as response:
        print(response.status)
except urllib.error.HTTPError as error:
    print(error.code, error.read().decode())
"""


def as_other_user(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            "setpriv",
            f"--reuid={OTHER_UID}",
            f"--regid={OTHER_UID}",
            "--clear-groups",
            *command,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_another_user_posting_to_the_loopback_port_is_refused_and_nothing_stored(
    daemon: DaemonProcess,
) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to connect as another user")
    assert daemon.status()["tcp_peer_check"] == "uid"
    url = daemon.http_url()
    result = as_other_user(sys.executable, "-c", FOREIGN_POST, url)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("403"), result.stdout
    assert "only the daemon's own user" in result.stdout
    # The owner on the same port is served; the other user's event never arrived.
    assert post_events(url, [{"event": "from.owner"}])[0] == 202
    wait_for_rows(daemon, 1)
    assert [row["event"] for row in daemon.export()] == ["from.owner"]
    assert daemon.status()["counters"]["received"] == 1
    assert '"socket": "tcp"' in daemon.log() and "foreign_peer_refused" in daemon.log()


def test_the_token_can_be_required_for_posting_over_tcp(daemon_factory: DaemonFactory) -> None:
    home = make_home()
    (home / "config.toml").write_text("http_require_token = true\n")
    daemon = daemon_factory({"AGENT_TELEMETRY_RATE_LIMIT": "off"}, home=home)
    assert daemon.status()["tcp_peer_check"] == "uid+token"
    url = daemon.http_url()
    token = (daemon.home / "data" / "dashboard-token").read_text().strip()
    assert post_events(url, [{"event": "no.token"}])[0] == 401
    wrong = {"Authorization": "Bearer not-the-token"}
    assert post_events(url, [{"event": "wrong.token"}], headers=wrong)[0] == 403
    right = {"Authorization": f"Bearer {token}"}
    assert post_events(url, [{"event": "with.token"}], headers=right)[0] == 202
    # ingest.sock is unchanged: the owner's shims need no token.
    with socket.socket(socket.AF_UNIX) as sock:
        sock.connect(str(daemon.ingest_socket))
        sock.sendall(b'{"event": "over.the.socket"}\n')
    wait_for_rows(daemon, 2)
    assert sorted(row["event"] for row in daemon.export()) == ["over.the.socket", "with.token"]


# --- the socket table, read as identd reads it ----------------------------------------------


def test_the_owner_of_a_loopback_connection_is_found_for_both_families() -> None:
    for family, host in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
        with socket.socket(family) as listener:
            listener.bind((host, 0))
            listener.listen()
            assert tcp_peer.table_readable(listener)
            with socket.create_connection(listener.getsockname()[:2]):
                accepted, _ = listener.accept()
                with accepted:
                    assert tcp_peer.peer_uid(accepted) == os.geteuid()


def fake_table(tmp_path: Path, lines: list[str]) -> Path:
    header = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid"
    (tmp_path / "tcp").write_text("\n".join([header, *lines]) + "\n")
    return tmp_path


class FakeSocket:
    family = socket.AF_INET

    def getsockname(self) -> tuple[str, int]:
        return ("127.0.0.1", 7468)

    def getpeername(self) -> tuple[str, int]:
        return ("127.0.0.1", 40000)


def test_the_table_line_of_the_clients_end_gives_the_uid(tmp_path: Path) -> None:
    # 127.0.0.1 on a little-endian machine is 0100007F; 7468 is 1D2C and 40000 is 9C40.
    ours = "0100007F:1D2C"
    theirs = "0100007F:9C40"
    if sys.byteorder == "big":
        ours, theirs = "7F000001:1D2C", "7F000001:9C40"
    fields = "00000000:00000000 00:00000000 00000000"
    proc = fake_table(
        tmp_path,
        [
            f"   0: {ours} {theirs} 01 {fields}     0        0 11 1",  # the daemon's end
            f"   1: {theirs} {ours} 01 {fields}  1001        0 12 1",  # the client's end
        ],
    )
    assert tcp_peer.peer_uid(FakeSocket(), proc) == 1001  # type: ignore[arg-type]
    # A client already gone to TIME_WAIT shows uid 0 there: unknown, not root.
    proc = fake_table(tmp_path, [f"   1: {theirs} {ours} 06 {fields}     0        0 0 1"])
    assert tcp_peer.peer_uid(FakeSocket(), proc) is None  # type: ignore[arg-type]
    assert tcp_peer.peer_uid(FakeSocket(), tmp_path / "missing") is None  # type: ignore[arg-type]


def test_status_names_the_protection_in_force() -> None:
    assert tcp_peer.protection(uid_check=True, token_required=False) == "uid"
    assert tcp_peer.protection(uid_check=True, token_required=True) == "uid+token"
    assert tcp_peer.protection(uid_check=False, token_required=True) == "token"
    assert tcp_peer.protection(uid_check=False, token_required=False) == "off"
