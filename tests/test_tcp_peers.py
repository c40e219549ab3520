"""Loopback TCP is reachable by every local user: only the owner's connections get in,
told apart by the kernel's socket table, or by the per-install token where asked for."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import posthog
import pytest

from agent_telemetryd.receivers import sock_diag, tcp_peer
from tests.conftest import DaemonFactory
from tests.daemon_process import DaemonProcess, make_home
from tests.test_daemon_ingest import post_events, send_lines, wait_for_rows

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


AS_OTHER_USER = ("setpriv", f"--reuid={OTHER_UID}", f"--regid={OTHER_UID}", "--clear-groups")


def as_other_user(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*AS_OTHER_USER, *command],
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


# Another user's program holding a loopback port until its standard input closes.
HOLD_PORT = """
import socket, sys
with socket.socket() as sock:
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    print(sock.getsockname()[1], flush=True)
    sys.stdin.read()
"""


def test_a_port_another_user_holds_leaves_the_daemon_running_on_its_sockets(
    daemon_factory: DaemonFactory,
) -> None:
    """On a shared machine another user (their own daemon, or anyone) may hold the port
    first. The daemon used to exit 3 for it, and the shims' events waited in the spool:
    now it serves its sockets, and status and doctor say what is missing and why."""
    holder = subprocess.Popen(
        [*AS_OTHER_USER, sys.executable, "-c", HOLD_PORT],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        port = int(holder.stdout.readline())
        daemon = daemon_factory({"AGENT_TELEMETRY_HTTP_PORT": str(port)})
        send_lines(daemon.ingest_socket, b'{"event": "over.the.socket"}\n')
        status = wait_for_rows(daemon, 1)
        assert status["paths"]["http"] is None
        assert (
            f"cannot listen on 127.0.0.1:{port}: Address already in use"
            in (status["http_unavailable"])
        )
        assert "the daemon runs on its sockets only" in daemon.cli("status").stdout
        checks = json.loads(daemon.cli("doctor", "--json", check=False).stdout)["checks"]
        (port_check,) = [check for check in checks if check["name"] == "port"]
        assert port_check["verdict"] == "fail"
        assert "reach the program that holds it, not the daemon" in port_check["detail"]
        assert f"http_port = {port + 1}" in port_check["fix"]
    finally:
        holder.communicate(timeout=30)


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


def post_json(url: str, document: object) -> int:
    request = urllib.request.Request(url, data=json.dumps(document).encode(), method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def test_a_posthog_sdk_posts_with_the_token_as_its_project_key(
    daemon_factory: DaemonFactory,
) -> None:
    """A PostHog SDK can add no header, but sends its project key in every request: with
    the token required, the token given as that key lets it in, and any other key does not
    (posthog-js puts it on each event as `token`, the server SDKs on the batch)."""
    home = make_home()
    (home / "config.toml").write_text("http_require_token = true\n")
    daemon = daemon_factory({"AGENT_TELEMETRY_RATE_LIMIT": "off"}, home=home)
    url = daemon.http_url()
    token = (daemon.home / "data" / "dashboard-token").read_text().strip()
    for key, event in ((token, "sdk.with.token"), ("phc_some_project_key", "sdk.other.key")):
        client = posthog.Posthog(key, host=url, sync_mode=True, max_retries=0)
        client.capture(event, distinct_id="d")
        client.shutdown()
    browser_style = [{"event": "js.with.token", "properties": {"token": token}}]
    assert post_json(url + "/e/", browser_style) == 200
    foreign = [{"event": "js.other", "properties": {"token": "phc_x"}}, *browser_style]
    assert post_json(url + "/e/", foreign) == 401
    assert sorted(row["event"] for row in daemon.export()) == ["js.with.token", "sdk.with.token"]
    assert daemon.status()["counters"]["received"] == 2  # refused bodies are no one's events


# --- the OTLP ports: OTLP/HTTP's own (4318) and gRPC ------------------------------------------

# Each channel its own connection, as separate exporter processes would have.
LOCAL_POOL = ("grpc.use_local_subchannel_pool", 1)
OTLP_PORTS_ON = {
    "AGENT_TELEMETRY_RATE_LIMIT": "off",
    "AGENT_TELEMETRY_OTLP_HTTP_PORT": "0",
    "AGENT_TELEMETRY_OTLP_GRPC_PORT": "0",
}
# An exporter's request with one log record named argv[2], sent to argv[1] (an OTLP/HTTP
# URL or a gRPC host:port) with the token argv[3] if given; prints the answer's status.
OTLP_HTTP_CLIENT = """
import sys, urllib.error, urllib.request
url, name, token = sys.argv[1], sys.argv[2], sys.argv[3:]
body = '{"resourceLogs": [{"scopeLogs": [{"logRecords": [{"eventName": "%s",' % name
body += ' "timeUnixNano": "1700000000000000000"}]}]}]}'
headers = {"Content-Type": "application/json"}
if token:
    headers["Authorization"] = "Bearer " + token[0]
request = urllib.request.Request(url + "/v1/logs", data=body.encode(), headers=headers)
try:
    with urllib.request.urlopen(request, timeout=30) as response:
        print(response.status)
except urllib.error.HTTPError as error:
    print(error.code, error.read().decode())
"""
OTLP_GRPC_CLIENT = """
import sys, grpc
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2, logs_service_pb2_grpc
target, name, token = sys.argv[1], sys.argv[2], sys.argv[3:]
request = logs_service_pb2.ExportLogsServiceRequest()
record = request.resource_logs.add().scope_logs.add().log_records.add()
record.event_name, record.time_unix_nano = name, 1700000000000000000
metadata = [("authorization", "Bearer " + token[0])] if token else None
with grpc.insecure_channel(target) as channel:
    try:
        logs_service_pb2_grpc.LogsServiceStub(channel).Export(
            request, metadata=metadata, timeout=30
        )
        print("OK")
    except grpc.RpcError as error:
        print(error.code().name, error.details())
"""


def export_as(client: str, target: str, name: str, *token: str, other_user: bool = False) -> str:
    command = [sys.executable, "-c", client, target, name, *token]
    if other_user:
        result = as_other_user(*command)
    else:
        result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def exported_names(daemon: DaemonProcess, expected: set[str]) -> set[str]:
    """The OTLP log events stored, once those expected are in (the resource's own event
    aside)."""
    deadline = time.monotonic() + 20
    while True:
        names = {row["event"] for row in daemon.export()} - {"otel.resource"}
        if expected <= names or time.monotonic() > deadline:
            return names
        time.sleep(0.1)


def test_another_user_is_refused_on_the_otlp_ports_too(daemon_factory: DaemonFactory) -> None:
    """OTLP/HTTP's own port and OTLP/gRPC are loopback TCP as well: the same rule."""
    if os.geteuid() != 0:
        pytest.skip("needs root to connect as another user")
    daemon = daemon_factory(OTLP_PORTS_ON)
    assert daemon.status()["tcp_peer_check"] == "uid"
    otlp = daemon.status()["otlp"]
    over_http = export_as(OTLP_HTTP_CLIENT, otlp["http"], "foreign.http", other_user=True)
    assert over_http.startswith("403") and "only the daemon's own user" in over_http, over_http
    over_grpc = export_as(OTLP_GRPC_CLIENT, otlp["grpc"], "foreign.grpc", other_user=True)
    assert over_grpc == "PERMISSION_DENIED only the daemon's own user may use this port"
    # The owner is served on both ports; nothing of the other user's arrived.
    assert export_as(OTLP_HTTP_CLIENT, otlp["http"], "owner.http") == "200"
    assert export_as(OTLP_GRPC_CLIENT, otlp["grpc"], "owner.grpc") == "OK"
    assert exported_names(daemon, {"owner.http", "owner.grpc"}) == {"owner.http", "owner.grpc"}
    assert "foreign_peer_refused" in daemon.log()


def test_the_token_is_required_on_the_otlp_ports_when_asked_for(
    daemon_factory: DaemonFactory,
) -> None:
    home = make_home()
    (home / "config.toml").write_text("http_require_token = true\n")
    daemon = daemon_factory(OTLP_PORTS_ON, home=home)
    otlp = daemon.status()["otlp"]
    token = (daemon.home / "data" / "dashboard-token").read_text().strip()
    http, grpc = otlp["http"], otlp["grpc"]
    assert export_as(OTLP_HTTP_CLIENT, http, "http.no.token").startswith("401")
    assert export_as(OTLP_HTTP_CLIENT, http, "http.wrong.token", "not-it").startswith("403")
    assert export_as(OTLP_HTTP_CLIENT, http, "http.with.token", token) == "200"
    assert export_as(OTLP_GRPC_CLIENT, grpc, "grpc.no.token").startswith("UNAUTHENTICATED")
    assert export_as(OTLP_GRPC_CLIENT, grpc, "grpc.wrong.token", "not-it").startswith(
        "UNAUTHENTICATED"
    )
    assert export_as(OTLP_GRPC_CLIENT, grpc, "grpc.with.token", token) == "OK"
    stored = exported_names(daemon, {"http.with.token", "grpc.with.token"})
    assert stored == {"http.with.token", "grpc.with.token"}


def otlp_log_request(name: str) -> Any:
    from opentelemetry.proto.collector.logs.v1 import logs_service_pb2

    request = logs_service_pb2.ExportLogsServiceRequest()
    record = request.resource_logs.add().scope_logs.add().log_records.add()
    record.event_name, record.time_unix_nano = name, 1700000000000000000
    return request


def grpc_export(channel: Any, name: str) -> str:
    import grpc
    from opentelemetry.proto.collector.logs.v1 import logs_service_pb2_grpc

    try:
        logs_service_pb2_grpc.LogsServiceStub(channel).Export(otlp_log_request(name), timeout=30)
        return "OK"
    except grpc.RpcError as error:
        return str(error.code().name)


def closed_by_daemon(sock: socket.socket) -> bool:
    """Whether the daemon ends the connection (within 30 s); what it says first (gRPC's
    settings frame) is read past."""
    sock.settimeout(30)
    try:
        while sock.recv(4096):
            pass
    except ConnectionResetError:
        pass
    except TimeoutError:
        return False
    return True


def test_the_otlp_ports_have_connection_budgets_and_timeouts_of_their_own(
    daemon_factory: DaemonFactory,
) -> None:
    import grpc

    home = make_home()
    (home / "config.toml").write_text(
        "[limits]\nmax_connections = 3\nidle_timeout = 600\nheader_timeout = 1\n"
    )
    daemon = daemon_factory(OTLP_PORTS_ON, home=home)
    otlp = daemon.status()["otlp"]
    http_port = int(otlp["http"].rsplit(":", 1)[1])
    grpc_host, grpc_port = otlp["grpc"].rsplit(":", 1)

    # OTLP/HTTP: three idle connections fill its budget and a fourth is told so; the main
    # port, with a budget of its own, still takes the owner's events.
    held = [socket.create_connection(("127.0.0.1", http_port)) for _ in range(3)]
    deadline = time.monotonic() + 30
    while daemon.status()["connections"]["otlp_http"]["open"] < 3:
        assert time.monotonic() < deadline, daemon.status()["connections"]
        time.sleep(0.05)
    with socket.create_connection(("127.0.0.1", http_port)) as fourth:
        fourth.settimeout(30)
        assert fourth.recv(4096).startswith(b"HTTP/1.1 503")
    assert post_events(daemon.http_url(), [{"event": "main.port"}])[0] == 202
    # Headers that stop coming are cut after header_timeout.
    held[0].sendall(b"POST /v1/logs HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    assert closed_by_daemon(held[0])
    assert daemon.status()["connections"]["otlp_http"]["timed_out"] == 1
    for sock in held:
        sock.close()

    # gRPC: three exporters connected fill its budget; a fourth cannot connect.
    channels = [grpc.insecure_channel(otlp["grpc"], options=[LOCAL_POOL]) for _ in range(4)]
    try:
        results = [grpc_export(channel, f"grpc.{n}") for n, channel in enumerate(channels)]
        assert results == ["OK", "OK", "OK", "UNAVAILABLE"]
    finally:
        for channel in channels:
            channel.close()
    # Room again (an exporter is served), and a connection that never completes gRPC's
    # handshake is closed after header_timeout, with the budget not reached.
    with grpc.insecure_channel(otlp["grpc"], options=[LOCAL_POOL]) as channel:
        deadline = time.monotonic() + 30
        while grpc_export(channel, "grpc.again") != "OK":
            assert time.monotonic() < deadline
            time.sleep(0.1)
        with socket.create_connection((grpc_host, int(grpc_port))) as silent:
            assert closed_by_daemon(silent)


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


# --- the kernel asked for one socket (sock_diag) -------------------------------------------


def test_the_kernel_names_the_owner_of_one_socket_and_nothing_for_a_closed_one() -> None:
    for family, host in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
        with socket.socket(family) as listener:
            listener.bind((host, 0))
            listener.listen()
            client = socket.create_connection(listener.getsockname()[:2])
            accepted, _ = listener.accept()
            ours, theirs = accepted.getsockname()[:2], accepted.getpeername()[:2]
            assert sock_diag.owner_uid(family, theirs, ours) == os.geteuid()
            assert sock_diag.owner_uid(family, (host, 1), ours) is None  # no such socket
            client.close()
            accepted.close()
            # The client's end waits out TIME_WAIT, where the kernel reports uid 0.
            deadline = time.monotonic() + 5
            while sock_diag.owner_uid(family, theirs, ours) is not None:
                assert time.monotonic() < deadline, "the closed client's socket still has an owner"
                time.sleep(0.01)


def test_the_kernel_names_another_users_socket_as_theirs() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to connect as another user")
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        code = (
            f"import socket, sys; s = socket.create_connection(('127.0.0.1', {port}));"
            " sys.stdin.read()"
        )
        child = subprocess.Popen(
            [*AS_OTHER_USER, sys.executable, "-c", code], stdin=subprocess.PIPE
        )
        try:
            accepted, _ = listener.accept()
            with accepted:
                theirs, ours = accepted.getpeername()[:2], accepted.getsockname()[:2]
                assert sock_diag.owner_uid(socket.AF_INET, theirs, ours) == OTHER_UID
                assert tcp_peer.peer_uid(accepted) == OTHER_UID
        finally:
            assert child.stdin is not None
            child.stdin.close()
            child.wait(timeout=30)


def test_a_dual_stack_client_is_found_by_the_ipv4_addresses_grpc_names() -> None:
    # gRPC's client and server both use IPv6 sockets for 127.0.0.1 (the kernel knows
    # them by ::ffff:127.0.0.1) and name the peer in IPv4 form.
    with socket.socket(socket.AF_INET6) as listener:
        listener.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        listener.bind(("::ffff:127.0.0.1", 0))  # loopback only, reached over IPv4
        listener.listen()
        port = listener.getsockname()[1]
        with socket.socket(socket.AF_INET6) as client:
            client.connect(("::ffff:127.0.0.1", port))
            accepted, _ = listener.accept()
            with accepted:
                theirs = ("127.0.0.1", client.getsockname()[1])
                ours = ("127.0.0.1", port)
                assert tcp_peer.owner_uid(socket.AF_INET, theirs, ours) == os.geteuid()
