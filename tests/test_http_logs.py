"""Malformed HTTP against the real daemon: at most one log line per request, naming the
error's type and route, never the request's bytes, headers or URL; a client that leaves
mid-body is counted and says nothing."""

from __future__ import annotations

import json
import logging
import socket
import time

import structlog
from aiohttp.http_exceptions import BadHttpMessage

from agent_telemetryd.logs import ForeignRecordHandler
from tests.conftest import DaemonFactory
from tests.daemon_process import DaemonProcess, make_home

CANARY = "sk-ant-api03-CANARYcanaryCANARY0123456789"
LIFECYCLE = {"daemon_started", "daemon_stopping", "daemon_stopped"}
HEAD = "POST /v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\n"
CHUNKED = HEAD + "Transfer-Encoding: chunked\r\n\r\n"

# Each shape: the pieces a client sends, with a pause where a piece is "WAIT".
ANSWERED = {
    "bad header value": [f"{HEAD}X-Agent-Name: a\x01{CANARY}\r\nContent-Length: 2\r\n\r\n{{}}"],
    "header line without a colon": [f"{HEAD}{CANARY}\r\nContent-Length: 2\r\n\r\n{{}}"],
    "over-long header": [f"{HEAD}X-Note: {CANARY}{'n' * 9000}\r\nContent-Length: 2\r\n\r\n{{}}"],
    "bad URL": [f"POST /v1/events?token={CANARY} HTTP/1.1 trailing\r\nHost: 127.0.0.1\r\n\r\n"],
    "control byte in URL": [f"POST /v1/\x7f{CANARY} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"],
    "bad chunk-size line": [f"{CHUNKED}zz{CANARY}\r\n{{}}\r\n0\r\n\r\n"],
}
# The bad chunk line after aiohttp already handed the request on: the body never ends, so
# the body timeout closes it.
TIMED_OUT = {
    "bad chunk-size line, later": [CHUNKED, "WAIT", f"zz{CANARY}\r\n{{}}\r\n0\r\n\r\n"],
}
GONE = {
    "gone mid-body": [f'{HEAD}Content-Length: 5000\r\n\r\n{{"event": "{CANARY}', "WAIT"],
    "gone mid-chunk": [f'{CHUNKED}1000\r\n{{"event": "{CANARY}', "WAIT"],
    "reset mid-body": [f'{HEAD}Content-Length: 5000\r\n\r\n{{"event": "{CANARY}', "WAIT", "RST"],
}


def send_shape(port: int, pieces: list[str]) -> bytes:
    """Send the pieces; the first bytes of the answer, or b"" when the daemon closed."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    try:
        for piece in pieces:
            if piece == "WAIT":
                time.sleep(0.2)  # the daemon has the first part as its own read
            elif piece == "RST":
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
                return b""
            else:
                sock.sendall(piece.encode("latin-1"))
        if pieces[-1] == "WAIT":
            return b""  # leaves with the body unsent: close() below is the FIN
        try:
            return sock.recv(64)
        except ConnectionResetError:
            return b""
    finally:
        sock.close()


def wait_for_connections(daemon: DaemonProcess, **at_least: int) -> dict:
    deadline = time.monotonic() + 20
    while True:
        tcp = daemon.status()["connections"]["tcp"]
        if all(tcp[name] >= count for name, count in at_least.items()) and tcp["open"] == 0:
            return tcp
        assert time.monotonic() < deadline, tcp
        time.sleep(0.05)


def test_malformed_requests_leave_one_line_each_and_no_request_bytes(
    daemon_factory: DaemonFactory,
) -> None:
    home = make_home()
    (home / "config.toml").write_text("[limits]\nbody_timeout = 1\nheader_timeout = 1\n")
    daemon = daemon_factory({"AGENT_TELEMETRY_RATE_LIMIT": "off"}, home=home)
    port = int(daemon.http_url().rsplit(":", 1)[1])

    for name, pieces in ANSWERED.items():
        assert send_shape(port, pieces).startswith((b"HTTP/1.0 400", b"HTTP/1.1 400")), name
    for pieces in [*TIMED_OUT.values(), *GONE.values()]:
        send_shape(port, pieces)
    tcp = wait_for_connections(daemon, client_gone=len(GONE), timed_out=len(TIMED_OUT))
    assert tcp["request_errors"] >= len(ANSWERED)  # each was seen and counted
    assert daemon.stop() == 0  # every line is written by now

    log = daemon.log()
    assert CANARY not in log
    assert "Traceback" not in log
    lines = [json.loads(line) for line in log.splitlines() if line.strip()]
    about_requests = [line for line in lines if line["event"] not in LIFECYCLE]
    # One line at most for each request that got an answer; none for those that left.
    assert len(about_requests) <= len(ANSWERED) + len(TIMED_OUT), about_requests
    malformed = [line for line in about_requests if line["event"] == "http_request_malformed"]
    assert malformed, about_requests
    for line in malformed:
        assert set(line) == {
            "listener",
            "route",
            "error_type",
            "failed_so_far",
            "event",
            "level",
            "timestamp",
        }
        assert line["route"] in ("/v1/events", None)


def test_other_libraries_records_lose_their_arguments_and_exception_text() -> None:
    """aiohttp and asyncio records become one line: template, logger, error type."""
    handler = ForeignRecordHandler()
    with structlog.testing.capture_logs() as captured:
        record = logging.LogRecord(
            "aiohttp.server",
            logging.ERROR,
            __file__,
            1,
            "Error handling request from %s",
            ("127.0.0.1",),
            (BadHttpMessage, BadHttpMessage(f"bad header: {CANARY}"), None),
        )
        handler.emit(record)
        handler.emit(
            logging.LogRecord(
                "asyncio",
                logging.ERROR,
                __file__,
                1,
                f"Exception in callback f(b'{CANARY}')\nhandle: <Handle f(b'{CANARY}')>",
                None,
                None,
            )
        )
        handler.emit(
            logging.LogRecord(
                "agent_telemetryd.service.notify",
                logging.WARNING,
                __file__,
                1,
                "sd_notify failed: %s",
                ("Connection refused",),
                None,
            )
        )
    assert CANARY not in repr(captured)
    assert [(c["event"], c.get("error_type")) for c in captured] == [
        ("Error handling request from %s", "BadHttpMessage"),
        ("Exception in callback f", None),
        ("sd_notify failed: Connection refused", None),
    ]
