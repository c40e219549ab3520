"""The daemon's HTTP side (aiohttp and its apps) is loaded by the first HTTP connection.

A daemon whose agents only write to ingest.sock never loads aiohttp; the first connection
to api.sock, the loopback port or OTLP's port has it built, and that first request, and
every one arriving meanwhile, is answered as any later one. The daemons here are started
with readiness read from sd_notify (READY=1), so nothing asks them anything over HTTP
before the test does.
"""

from __future__ import annotations

import http.client
import json
import socket
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agent_telemetryd.cli.api_client import ApiClient
from agent_telemetryd.receivers.http_connection import HELD_BYTES
from tests.daemon_process import DaemonProcess
from tests.shim_agents import run_agent

HTTP_SIDE = {"aiohttp", "yarl", "multidict"}
# `agent-telemetry daemon` starts without the command line (click, the API client).
CLI_SIDE = {"click", "http"}
HTTP_MODULES = {
    "agent_telemetryd.http_apps",
    "agent_telemetryd.web_context",
    "agent_telemetryd.receivers.http_serving",
    "agent_telemetryd.receivers.api_routes",
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def quiet_daemon(factory: Callable[..., DaemonProcess], **env: str) -> DaemonProcess:
    """A daemon, ready by sd_notify: nobody has asked it anything over HTTP."""
    daemon = factory({"AGENT_TELEMETRY_RATE_LIMIT": "off", **env}, start=False)
    return daemon.start(ready="notify")


def stored_events(database: Path, count: int, timeout: float = 90.0) -> list[str]:
    """The names of the events committed to the buffer, once there are `count` of them;
    read from the file, so the daemon is asked nothing."""
    deadline = time.monotonic() + timeout
    while True:
        names: list[str] = []
        if database.exists():
            conn = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
            try:
                names = [row[0] for row in conn.execute("SELECT event FROM events")]
            except sqlite3.OperationalError:
                pass  # the daemon is still creating its tables
            finally:
                conn.close()
        if len(names) >= count:
            return sorted(names)
        assert time.monotonic() < deadline, f"{len(names)} of {count} events stored"
        time.sleep(0.05)


def post(port: int, path: str, body: Any, pause: float = 0.0) -> tuple[int, Any]:
    """One HTTP request on a new connection; with `pause`, the body follows the headers
    after that long (so it arrives in two pieces)."""
    payload = json.dumps(body).encode()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.putrequest("POST", path)
        conn.putheader("Content-Type", "application/json")
        conn.putheader("Content-Length", str(len(payload)))
        conn.endheaders()
        if pause:
            time.sleep(pause)
        conn.send(payload)
        response = conn.getresponse()
        return response.status, json.loads(response.read() or b"null")
    finally:
        conn.close()


def debug_modules(daemon: DaemonProcess) -> dict[str, Any]:
    path = "/v1/debug/modules?under=agent_telemetryd"
    answer: dict[str, Any] = ApiClient(daemon.api_socket).json("GET", path)
    return answer


def test_a_daemon_fed_only_over_ingest_sock_never_loads_aiohttp(
    daemon_factory: Callable[..., DaemonProcess],
) -> None:
    daemon = quiet_daemon(daemon_factory)
    run_agent(
        daemon.home,
        """
        from agent_telemetry import flush, track
        for name in ("plan.made", "tool.call", "run.done"):
            track(name, {"ok": True})
        flush(10)
        """,
    )
    assert stored_events(daemon.database, 3) == ["plan.made", "run.done", "tool.call"]

    # The first HTTP request of its life: this one, on api.sock.
    answer = debug_modules(daemon)
    before = answer["before_http"]
    assert before["listener"] == "api"
    assert not HTTP_SIDE & set(before["modules"]), "loaded before any HTTP request"
    assert not CLI_SIDE & set(before["modules"])
    assert not HTTP_MODULES & set(before["under"])
    assert "agent_telemetryd.receivers.ndjson_socket" in before["under"]
    assert "agent_telemetryd.upload.part" in before["under"]
    # Now it has them, and says so.
    assert set(answer["modules"]) >= HTTP_SIDE
    assert set(answer["under"]) >= HTTP_MODULES
    assert {event["event"] for event in daemon.export()} == {"plan.made", "tool.call", "run.done"}


def test_status_is_answered_as_the_first_request(
    daemon_factory: Callable[..., DaemonProcess],
) -> None:
    daemon = quiet_daemon(daemon_factory)
    status = daemon.status()
    assert status["running"] is True
    assert status["connections"]["api"]["open"] == 1  # this request's own connection
    assert debug_modules(daemon)["before_http"]["listener"] == "api"


def test_an_event_posted_to_the_port_as_the_first_connection_is_stored(
    daemon_factory: Callable[..., DaemonProcess],
) -> None:
    port = free_port()
    daemon = quiet_daemon(daemon_factory, AGENT_TELEMETRY_HTTP_PORT=str(port))
    status, body = post(port, "/v1/events", {"event": "first.contact", "agent": "early"})
    assert (status, body["accepted"], body["rejected"]) == (202, 1, [])
    assert stored_events(daemon.database, 1) == ["first.contact"]
    assert debug_modules(daemon)["before_http"]["listener"] == "tcp"


def test_a_large_batch_as_the_first_request_is_read_whole(
    daemon_factory: Callable[..., DaemonProcess],
) -> None:
    """More than the daemon holds for aiohttp while loading it: the rest waits unread in
    the socket until the handover, and nothing of it is lost."""
    port = free_port()
    daemon = quiet_daemon(daemon_factory, AGENT_TELEMETRY_HTTP_PORT=str(port))
    batch = {"events": [{"event": "big", "properties": {"note": "x" * 300}}] * 1000}
    for i, event in enumerate(batch["events"]):
        batch["events"][i] = {**event, "properties": {**event["properties"], "i": i}}
    assert len(json.dumps(batch)) > 4 * HELD_BYTES
    status, body = post(port, "/v1/events", batch)
    assert (status, body["accepted"], body["rejected"]) == (202, 1000, [])
    assert stored_events(daemon.database, 1000) == ["big"] * 1000


def test_a_burst_of_first_connections_on_every_listener_is_answered(
    daemon_factory: Callable[..., DaemonProcess],
) -> None:
    port, otlp_port = free_port(), free_port()
    daemon = quiet_daemon(
        daemon_factory,
        AGENT_TELEMETRY_HTTP_PORT=str(port),
        AGENT_TELEMETRY_OTLP_HTTP_PORT=str(otlp_port),
    )
    clients = 24
    start = threading.Barrier(clients)
    answers: dict[int, Any] = {}

    def client(i: int) -> None:
        start.wait()
        try:
            if i % 4 == 0:
                answers[i] = ApiClient(daemon.api_socket).json("GET", "/v1/status")["running"]
            elif i % 4 == 1:
                answers[i] = post(otlp_port, "/v1/traces", {"resourceSpans": []})
            else:
                # Half of these send their body after a moment: held, then handed over.
                event = {"event": "burst", "properties": {"i": i}}
                answers[i] = post(port, "/v1/events", event, pause=0.05 * (i % 2))
        except Exception as error:  # the assertion below names it
            answers[i] = repr(error)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    for i in range(clients):
        if i % 4 == 0:
            assert answers[i] is True, answers[i]
        elif i % 4 == 1:
            assert answers[i] == (200, {}), answers[i]
        else:
            status, body = answers[i]
            assert (status, body["accepted"]) == (202, 1), answers[i]
    posted = sum(1 for i in range(clients) if i % 4 >= 2)
    assert stored_events(daemon.database, posted) == ["burst"] * posted
    connections = daemon.status()["connections"]
    assert {"api", "tcp", "otlp_http", "ingest"} <= set(connections)
    assert connections["tcp"]["refused"] == 0 and connections["tcp"]["timed_out"] == 0


def test_an_otlp_export_to_otlps_port_as_the_first_connection_is_stored(
    daemon_factory: Callable[..., DaemonProcess],
) -> None:
    otlp_port = free_port()
    daemon = quiet_daemon(daemon_factory, AGENT_TELEMETRY_OTLP_HTTP_PORT=str(otlp_port))
    spans = {
        "resourceSpans": [
            {
                "scopeSpans": [
                    {
                        "spans": [
                            {
                                "traceId": "5b8efff798038103d269b633813fc60c",
                                "spanId": "eee19b7ec3c1b174",
                                "name": "first.span",
                                "startTimeUnixNano": str(time.time_ns() - 1_000_000),
                                "endTimeUnixNano": str(time.time_ns()),
                            }
                        ]
                    }
                ]
            }
        ]
    }
    assert post(otlp_port, "/v1/traces", spans) == (200, {})
    assert "first.span" in stored_events(daemon.database, 1)
    assert debug_modules(daemon)["before_http"]["listener"] == "otlp_http"


def test_a_connection_waiting_for_the_http_side_goes_quietly_at_sigterm(
    daemon_factory: Callable[..., DaemonProcess],
) -> None:
    port = free_port()
    daemon = quiet_daemon(daemon_factory, AGENT_TELEMETRY_HTTP_PORT=str(port))
    with socket.create_connection(("127.0.0.1", port), timeout=30) as client:
        # Connected and silent: it asked for the HTTP side, and waits like an idle
        # keep-alive connection, which a shutdown lets go at once.
        deadline = time.monotonic() + 30
        while "http_starting" not in daemon.log():
            assert time.monotonic() < deadline, daemon.log()
            time.sleep(0.02)
        assert daemon.stop() == 0
        assert client.recv(1024) == b""  # closed by the daemon, not reset
    assert "connections_cut_at_shutdown" not in daemon.log()
    assert '"forced": false' in daemon.log()
