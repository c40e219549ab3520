"""The dashboard's HTTP surface on a real daemon: token, Host/Origin, api.sock, CLI errors."""

from __future__ import annotations

import http.client
import json
import socket
import urllib.parse
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import DaemonFactory
from tests.daemon_process import DaemonProcess, clean_environment, make_home


@pytest.fixture(scope="module")
def shared() -> Iterator[DaemonProcess]:
    """One daemon for the read-only checks below: each start costs seconds."""
    home = make_home()
    process = DaemonProcess(home, clean_environment(home, {"AGENT_TELEMETRY_RATE_LIMIT": "off"}))
    try:
        yield process.start()
    finally:
        process.cleanup()


VIEWS = ("all", "summary", "timeseries", "agents", "events", "durations", "uploads")


_URLS: dict[int, str] = {}


def base_url(daemon: DaemonProcess) -> str:
    """The daemon's URL, asked once (each `status` is a CLI process)."""
    key = str(daemon.home)
    if key not in _URLS:
        _URLS[key] = daemon.http_url()
    return _URLS[key]


def get(daemon: DaemonProcess, path: str, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    url = urllib.parse.urlsplit(base_url(daemon))
    conn = http.client.HTTPConnection(url.hostname or "", url.port, timeout=10)
    try:
        conn.request("GET", path, headers=headers or {})
        response = conn.getresponse()
        body = response.read()
        kind = response.getheader("Content-Type", "")
        return response.status, json.loads(body) if "json" in kind else body.decode()
    finally:
        conn.close()


def token_of(daemon: DaemonProcess) -> str:
    url = daemon.cli("dashboard", "--no-browser").stdout.strip()
    return urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)["token"][0]


def test_data_endpoints_refuse_without_the_token(shared: DaemonProcess) -> None:
    """No token: 401. A wrong one, in the query or as a bearer: 403. The right one: 200."""
    daemon = shared
    token = token_of(daemon)
    for name in VIEWS:
        path = f"/dashboard/api/{name}"
        status, body = get(daemon, path)
        assert status == 401 and "token" in body["error"], name
        assert get(daemon, f"{path}?token=not-it")[0] == 403, name
        assert get(daemon, path, {"Authorization": "Bearer " + token[:-1] + "x"})[0] == 403
        assert get(daemon, f"{path}?token={token}")[0] == 200, name
        assert get(daemon, path, {"Authorization": f"Bearer {token}"})[0] == 200, name
    assert get(daemon, "/dashboard")[0] == 401
    status, page = get(daemon, f"/dashboard?token={token}")
    assert status == 200 and "<title>agent-telemetry" in page


def test_foreign_origin_and_host_are_refused(shared: DaemonProcess) -> None:
    """Even with the token, a request from another site or another Host name is refused."""
    daemon = shared
    token = token_of(daemon)
    for headers in (
        {"Origin": "http://evil.example"},
        {"Origin": "null"},
        {"Host": "evil.example"},
    ):
        assert get(daemon, f"/dashboard/api/all?token={token}", headers)[0] == 403, headers
        assert get(daemon, f"/dashboard?token={token}", headers)[0] == 403, headers
    own = {"Origin": base_url(daemon)}
    status, data = get(daemon, f"/dashboard/api/all?token={token}", own)
    assert status == 200 and "Access-Control-Allow-Origin" not in data


def test_page_headers_keep_the_token_in(shared: DaemonProcess) -> None:
    """No referrer, no caching, no framing; the page's CSP allows its own origin only."""
    daemon = shared
    token = token_of(daemon)
    url = urllib.parse.urlsplit(base_url(daemon))
    conn = http.client.HTTPConnection(url.hostname or "", url.port, timeout=10)
    conn.request("GET", f"/dashboard?token={token}")
    response = conn.getresponse()
    response.read()
    conn.close()
    assert response.getheader("Referrer-Policy") == "no-referrer"
    assert response.getheader("Cache-Control") == "no-store"
    assert "connect-src 'self'" in response.getheader("Content-Security-Policy", "")
    assert "frame-ancestors 'none'" in response.getheader("Content-Security-Policy", "")


def test_api_socket_serves_views_to_the_same_user(shared: DaemonProcess) -> None:
    """On api.sock (same uid only) the views need no token."""
    daemon = shared
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(str(daemon.api_socket))
    sock.sendall(
        b"GET /dashboard/api/summary HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    raw = b""
    while chunk := sock.recv(65536):
        raw += chunk
    sock.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    assert json.loads(body)["totals"] == {"events": 0, "errors": 0, "error_rate": None}


def test_bad_filters_are_a_400(shared: DaemonProcess) -> None:
    daemon = shared
    token = token_of(daemon)
    status, body = get(daemon, f"/dashboard/api/all?token={token}&since=yesterday")
    assert status == 400 and "since" in body["error"]


def test_dashboard_command_errors(daemon_factory: DaemonFactory) -> None:
    """Daemon down, or HTTP off: one clear line and a non-zero exit, no traceback."""
    stopped = daemon_factory(start=False)
    result = stopped.cli("dashboard", "--no-browser", check=False)
    assert result.returncode == 1
    assert "daemon is not running" in result.stderr and "Traceback" not in result.stderr
    no_http = daemon_factory({"AGENT_TELEMETRY_HTTP_PORT": "off"})
    result = no_http.cli("dashboard", "--no-browser", check=False)
    assert result.returncode == 1 and "HTTP listener is off" in result.stderr


@pytest.mark.parametrize("since", ["7d", "24h"])
def test_report_command_without_a_daemon_or_buffer(
    daemon_factory: DaemonFactory, since: str
) -> None:
    """A fresh install with nothing stored still gets a report (the empty state)."""
    fresh = daemon_factory(start=False)
    out = fresh.home / "report.html"
    result = fresh.cli("report", "-o", str(out), "--since", since)
    assert "0 events" in result.stdout
    html = out.read_text()
    assert 'data-mode="report"' in html and "No events yet" in html
    assert "<script src=" not in html and '<link rel="stylesheet"' not in html
