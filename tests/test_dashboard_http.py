"""The dashboard's HTTP surface on a real daemon: token, Host/Origin, api.sock, CLI errors."""

from __future__ import annotations

import http.client
import json
import socket
import stat
import subprocess
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import DaemonFactory
from tests.daemon_process import CLI, DaemonProcess, clean_environment, make_home
from tests.test_dashboard_browser import post_events


@pytest.fixture(scope="module")
def shared() -> Iterator[DaemonProcess]:
    """One daemon for the read-only checks below: each start costs seconds."""
    home = make_home()
    process = DaemonProcess(home, clean_environment(home, {"AGENT_TELEMETRY_RATE_LIMIT": "off"}))
    try:
        yield process.start()
    finally:
        process.cleanup()


VIEWS = ("all", "span", "summary", "timeseries", "agents", "events", "durations", "uploads")


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
    # The page itself holds no data, so a reload (the token is out of the address by
    # then) or a bookmark loads it; its script asks the API with the token it kept.
    for path in ("/dashboard", f"/dashboard?token={token}"):
        status, page = get(daemon, path)
        assert status == 200 and "<title>agent-telemetry" in page and token not in page


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


def test_report_and_the_views_read_a_time_as_stats_and_export_do(daemon: DaemonProcess) -> None:
    """`--since 30m` worked for `stats` and `export` but not for `report` or the views'
    `since=`, which knew only hours and days, and those took `-1h` (a range in the
    future, so an empty report) for a time. One rule now: any duration a setting takes."""
    post_events(daemon, [{"event": "recent.event", "agent": "planner"}] * 2)
    out = daemon.home / "report.html"
    for since in ("30m", "90s", "1.5h", "2w"):
        result = daemon.cli("report", "-o", str(out), "--since", since, check=False)
        assert result.returncode == 0, (since, result.stderr)
        assert result.stdout.startswith(f"wrote {out} (2 events;"), since
    refused = daemon.cli("report", "-o", str(out), "--since", "-1h", check=False)
    assert refused.returncode != 0 and "negative" in refused.stderr
    assert "Traceback" not in refused.stderr
    token = token_of(daemon)
    status, body = get(daemon, f"/dashboard/api/summary?token={token}&since=30m")
    assert status == 200 and body["totals"]["events"] == 2
    status, body = get(daemon, f"/dashboard/api/summary?token={token}&since=-1h")
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
    assert stat.S_IMODE(out.stat().st_mode) == 0o600  # the user's data, like the buffer


def test_the_browser_is_never_handed_the_token_on_its_command_line(
    shared: DaemonProcess, tmp_path: Path
) -> None:
    """Every local user can read a command line (`ps`): the browser gets a private file
    that forwards to the tokenised URL, as Jupyter does it."""
    argv_file = tmp_path / "argv"
    browser = tmp_path / "browser"
    browser.write_text(f'#!/bin/sh\nprintf "%s" "$*" > {argv_file}\n')
    browser.chmod(0o700)
    env = {**shared.env, "BROWSER": str(browser)}
    result = subprocess.run([CLI, "dashboard"], env=env, capture_output=True, text=True)
    token = token_of(shared)
    assert result.returncode == 0 and token in result.stdout  # printed for the user only
    opened = argv_file.read_text()
    assert opened.startswith("file://") and token not in opened
    page = Path(urllib.parse.unquote(urllib.parse.urlsplit(opened).path))
    assert stat.S_IMODE(page.stat().st_mode) == 0o600 and token in page.read_text()


def test_a_non_utf8_token_header_is_refused_not_a_server_error(shared: DaemonProcess) -> None:
    url = urllib.parse.urlsplit(base_url(shared))
    with socket.create_connection((url.hostname, url.port), timeout=10) as sock:
        sock.sendall(
            b"GET /dashboard/api/summary HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Authorization: Bearer \xff\xfe\r\nConnection: close\r\n\r\n"
        )
        assert sock.recv(100).startswith(b"HTTP/1.1 403")
    token = token_of(shared)
    status, _ = get(shared, f"/dashboard/api/summary?token={token}&since=99999999999999d")
    assert status == 200  # as far back as it goes, not an overflow
