"""An `X-Agent-Name` header whose bytes are not UTF-8 (a careless agent, a Latin-1 program
name): its events are stored under a readable name, and the daemon goes on storing what
every other agent sends (a name SQLite could not encode once stopped the buffer's writer)."""

from __future__ import annotations

import socket

import pytest

from tests.daemon_process import DaemonProcess

LATIN1_NAME = "Müller-Bot".encode("latin-1")  # b"M\xfcller-Bot": not UTF-8


def post(port: int, path: str, body: bytes, agent: bytes) -> tuple[int, bytes]:
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Connection: close\r\nContent-Length: {len(body)}\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(head + b"X-Agent-Name: " + agent + b"\r\n\r\n" + body)
        raw = b""
        while chunk := sock.recv(65536):
            raw += chunk
    status_line, _, rest = raw.partition(b"\r\n")
    return int(status_line.split(b" ")[1]), rest.partition(b"\r\n\r\n")[2]


@pytest.mark.parametrize(
    ("path", "body", "accepted"),
    [
        ("/v1/events", b'{"event": "latin1.header"}', 202),
        ("/batch/", b'{"batch": [{"event": "latin1.header", "distinct_id": "u"}]}', 200),
    ],
)
def test_a_header_that_is_not_utf8_names_the_source_and_stops_nothing(
    daemon: DaemonProcess, path: str, body: bytes, accepted: int
) -> None:
    port = int(daemon.http_url().rsplit(":", 1)[1])
    status, answer = post(port, path, body, LATIN1_NAME)
    assert status == accepted, answer

    # The next agent is still served: the bad name did not stop the buffer's writer.
    status, answer = post(port, "/v1/events", b'{"event": "next.agent"}', b"planner")
    assert status == 202, answer

    stored = {row["event"]: row for row in daemon.export()}
    assert {"latin1.header", "next.agent"} <= set(stored)
    assert stored["latin1.header"]["agent"] == "M\ufffdller-Bot"
