"""What a client reads when its request is refused before any route: a JSON error that says
what kind of thing was wrong, never a byte of what it sent (a header's value, the URL with
its query and a token in it), over TCP and api.sock alike."""

from __future__ import annotations

import json
import socket
from collections.abc import Callable

import pytest

from tests.daemon_process import DaemonProcess
from tests.test_http_logs import ANSWERED, CANARY, HEAD


def answer_of(sock: socket.socket, request: str) -> tuple[int, dict[str, str], bytes]:
    """Send `request`, read the answer to the end (the daemon closes after an error)."""
    with sock:
        sock.settimeout(30)
        sock.sendall(request.encode("latin-1"))
        raw = b""
        while chunk := sock.recv(65536):
            raw += chunk
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in header_lines)
    return int(status_line.split(" ")[1]), headers, body


def tcp(daemon: DaemonProcess) -> socket.socket:
    return socket.create_connection(("127.0.0.1", int(daemon.http_url().rsplit(":", 1)[1])))


def unix(daemon: DaemonProcess) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(str(daemon.api_socket))
    return sock


@pytest.mark.parametrize("connect", [tcp, unix], ids=["tcp", "api.sock"])
def test_a_malformed_request_is_answered_without_its_own_bytes(
    daemon: DaemonProcess, connect: Callable[[DaemonProcess], socket.socket]
) -> None:
    for name, pieces in ANSWERED.items():
        status, headers, body = answer_of(connect(daemon), "".join(pieces))
        assert status == 400, name
        assert CANARY.encode() not in body, name
        assert headers["Content-Type"].startswith("application/json"), name
        assert json.loads(body)["error"], name


def test_an_encoding_the_daemon_cannot_undo_is_415_naming_what_it_takes(
    daemon: DaemonProcess,
) -> None:
    request = f"{HEAD}Content-Encoding: br\r\nContent-Length: 2\r\n\r\n{{}}"
    status, headers, body = answer_of(tcp(daemon), request)
    assert status == 415
    assert headers["Content-Type"].startswith("application/json")
    error = json.loads(body)["error"]
    assert "gzip" in error
    assert "install" not in error  # aiohttp's own text told the client to install Brotli
