"""HTTP bodies and settings a hostile or careless client can produce, against the real daemon:
compression bombs, a full buffer, bodies that are not events, and loopback addresses other
than 127.0.0.1."""

from __future__ import annotations

import base64
import json
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
import zlib
from pathlib import Path

import pytest

from agent_telemetryd.config import ConfigError, load_config
from agent_telemetryd.paths import resolve_paths
from agent_telemetryd.receivers.http_guard import is_loopback_host
from agent_telemetryd.receivers.http_ingest import MAX_EVENTS_PER_REQUEST
from tests.conftest import DaemonFactory
from tests.daemon_process import DaemonProcess, make_home
from tests.test_daemon_ingest import post_events

BOMB_INFLATED_BYTES = 512 * 1024 * 1024
# What the daemon may grow to while refusing a bomb: idle it is under 50 MB, and a body is
# cut off at 8 MiB (about 60 MB at the peak). Inflating without a bound reached 1 GB.
PEAK_RSS_LIMIT_MB = 100


def post(
    url: str, body: bytes, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    """POST raw bytes; (status, headers, body) whatever the status."""
    request = urllib.request.Request(url, data=body, headers=headers or {}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def peak_rss_mb(daemon: DaemonProcess) -> float:
    assert daemon.proc is not None
    for line in Path(f"/proc/{daemon.proc.pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM in /proc/PID/status")


def wait_for_counters(daemon: DaemonProcess, received: int, timeout: float = 10.0) -> dict:
    deadline = time.monotonic() + timeout
    counters = daemon.status()["counters"]
    while counters["received"] < received and time.monotonic() < deadline:
        time.sleep(0.05)
        counters = daemon.status()["counters"]
    return counters


@pytest.fixture(scope="module")
def gzip_bomb() -> bytes:
    """Half a GiB of spaces, gzip-compressed to about half a MiB."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    block = b" " * (1024 * 1024)
    parts = [compressor.compress(block) for _ in range(BOMB_INFLATED_BYTES // len(block))]
    return b"".join(parts) + compressor.flush()


def bomb_request(kind: str, bomb: bytes) -> tuple[str, bytes, dict[str, str]]:
    """(path, body, headers) carrying the bomb the way each kind of client compresses."""
    if kind == "posthog-gzip-body":  # posthog-js gzip-js: gzip bytes, whatever the headers say
        return "/batch/", bomb, {"Content-Type": "text/plain"}
    if kind == "posthog-form":  # data=<base64 gzip>, ?compression=gzip-js
        form = urllib.parse.urlencode({"data": base64.b64encode(bomb).decode()}).encode()
        return (
            "/i/v0/e/?compression=gzip-js",
            form,
            {"Content-Type": "application/x-www-form-urlencoded"},
        )
    if kind == "posthog-content-encoding":
        return "/capture/", bomb, {"Content-Type": "application/json", "Content-Encoding": "gzip"}
    if kind == "events-content-encoding":
        return "/v1/events", bomb, {"Content-Type": "application/json", "Content-Encoding": "gzip"}
    assert kind == "events-plain"  # no compression, just over the limit
    return "/v1/events", b" " * (8 * 1024 * 1024 + 1), {"Content-Type": "application/json"}


@pytest.mark.parametrize(
    "kind",
    [
        "posthog-gzip-body",
        "posthog-form",
        "posthog-content-encoding",
        "events-content-encoding",
        "events-plain",
    ],
)
def test_a_gzip_bomb_is_refused_with_413_and_never_inflated(
    daemon: DaemonProcess, gzip_bomb: bytes, kind: str
) -> None:
    url = daemon.http_url()
    path, body, headers = bomb_request(kind, gzip_bomb)
    status, _, answer = post(url + path, body, headers)
    assert peak_rss_mb(daemon) < PEAK_RSS_LIMIT_MB
    assert status == 413, answer[:300]
    assert b"8388608 bytes" in answer, answer[:300]
    # Still taking events, and the refused body is accounted for.
    assert post_events(url, [{"event": "after.bomb"}])[0] == 202
    counters = wait_for_counters(daemon, 2)
    assert (counters["received"], counters["rejected"], counters["stored"]) == (2, 1, 1)
    assert peak_rss_mb(daemon) < PEAK_RSS_LIMIT_MB


def gzip_bytes(data: bytes) -> bytes:
    compressor = zlib.compressobj(6, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    return compressor.compress(data) + compressor.flush()


def test_gzip_bodies_within_the_limit_are_still_taken(daemon: DaemonProcess) -> None:
    """The bound must not cost the SDKs that compress: both PostHog encodings still land."""
    url = daemon.http_url()

    def batch(name: str) -> bytes:
        return json.dumps({"batch": [{"event": name, "properties": {"n": 1}}]}).encode()

    status = post(url + "/batch/", gzip_bytes(batch("gz.body")), {"Content-Type": "text/plain"})
    assert status[0] == 200
    form = urllib.parse.urlencode({"data": base64.b64encode(gzip_bytes(batch("gz.form"))).decode()})
    assert post(url + "/e/?compression=gzip-js", form.encode())[0] == 200
    assert sorted(row["event"] for row in daemon.export()) == ["gz.body", "gz.form"]


# --- a full buffer is not a success -------------------------------------------------------


def test_a_full_buffer_answers_503_with_retry_after_not_202(
    daemon_factory: DaemonFactory,
) -> None:
    daemon = daemon_factory(
        {"AGENT_TELEMETRY_MAX_EVENTS": "10", "AGENT_TELEMETRY_RATE_LIMIT": "off"}
    )
    url = daemon.http_url()
    status, body = post_events(url, [{"event": "fill", "properties": {"i": i}} for i in range(10)])
    assert (status, body["accepted"]) == (202, 10)

    request = urllib.request.Request(
        f"{url}/v1/events",
        data=json.dumps({"events": [{"event": "late"}, {"nope": 1}, {"event": "late"}]}).encode(),
        method="POST",
    )
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, timeout=30)
    assert caught.value.code == 503
    assert caught.value.headers["Retry-After"]
    refused = json.loads(caught.value.read())
    assert "buffer full" in refused["error"]
    assert refused["accepted"] == 0 and refused["refused_buffer_full"] == 2
    assert [r["index"] for r in refused["rejected"]] == [0, 1, 2]

    # A PostHog SDK must not be told {"status": 1} for events that were not kept.
    batch = json.dumps({"batch": [{"event": "ph.late"}, {"event": "ph.late"}]}).encode()
    status, headers, answer = post(url + "/batch/", batch, {"Content-Type": "application/json"})
    assert status == 503, answer
    assert headers.get("Retry-After")
    assert "buffer full" in json.loads(answer)["error"]

    assert len(daemon.export()) == 10
    counters = daemon.status()["counters"]
    assert counters["dropped_by_reason"]["buffer_full"] == 4
    assert counters["received"] == (counters["stored"] + counters["rejected"] + counters["dropped"])


def test_a_partly_full_buffer_lists_the_refused_events_by_index(
    daemon_factory: DaemonFactory,
) -> None:
    home = make_home()
    # The allowlist drops events quietly: the indices must still point at the right ones.
    (home / "config.toml").write_text('[privacy]\nallow_events = ["keep"]\n')
    daemon = daemon_factory(
        {"AGENT_TELEMETRY_MAX_EVENTS": "10", "AGENT_TELEMETRY_RATE_LIMIT": "off"}, home=home
    )
    url = daemon.http_url()
    assert post_events(url, [{"event": "keep"}] * 7)[1]["accepted"] == 7
    events = [
        {"event": "keep", "properties": {"i": 0}},
        {"nope": 1},  # invalid
        {"event": "not.allowed"},  # dropped by the allowlist
        {"event": "keep", "properties": {"i": 3}},
        {"event": "keep", "properties": {"i": 4}},
        {"event": "keep", "properties": {"i": 5}},
        {"event": "keep", "properties": {"i": 6}},
    ]
    status, body = post_events(url, events)
    assert status == 202
    assert body["accepted"] == 3 and body["refused_buffer_full"] == 2
    assert [(r["index"], r["reason"]) for r in body["rejected"][1:]] == [
        (5, "buffer full"),
        (6, "buffer full"),
    ]
    assert body["rejected"][0]["index"] == 1
    stored = sorted(r["properties"]["i"] for r in daemon.export() if r["properties"])
    assert stored == [0, 3, 4]


# --- bodies that are not events are accounted for -----------------------------------------


def test_bodies_that_are_not_events_count_as_received_and_rejected(
    daemon: DaemonProcess,
) -> None:
    url = daemon.http_url()
    plain = {"Content-Type": "application/json"}
    gzipped = {**plain, "Content-Encoding": "gzip"}
    bad = [
        ("/v1/events", b"{not json", plain),
        ("/v1/events", b"", plain),
        ("/v1/events", b'{"events": 3}', plain),
        ("/v1/events", b"\xff\xfe invalid utf-8", plain),
        ("/v1/events", b"not gzip at all", gzipped),
        ("/batch/", b"{not json", plain),
        ("/batch/", b'{"batch": {"event": "x"}}', plain),
        ("/e/", b"\x1f\x8b truncated gzip", plain),
        ("/capture/", b"not gzip at all", gzipped),
    ]
    for path, body, headers in bad:
        status, _, answer = post(url + path, body, headers)
        assert status == 400, (path, body, answer)
    counters = wait_for_counters(daemon, len(bad))
    assert (counters["received"], counters["rejected"]) == (len(bad), len(bad))
    assert counters["received"] == (counters["stored"] + counters["rejected"] + counters["dropped"])
    # The reason is logged (never the body), and no traceback.
    log = daemon.log()
    assert "request body is not valid gzip (its Content-Encoding)" in log
    assert "Traceback" not in log


def test_a_request_of_more_events_than_the_limit_is_413_and_nothing_is_kept(
    daemon: DaemonProcess,
) -> None:
    """Half a million tiny events fit in 8 MiB; taken in one go they held the daemon's loop
    for seconds and grew it by hundreds of MB for good. Over the limit a request is refused
    whole, with a message naming the field; at the limit it is taken."""
    url = daemon.http_url()
    plain = {"Content-Type": "application/json"}
    over = [{"event": "too.many"}] * (MAX_EVENTS_PER_REQUEST + 1)
    for path, field in (("/v1/events", "events"), ("/batch/", "batch")):
        status, _, answer = post(url + path, json.dumps({field: over}).encode(), plain)
        assert status == 413, answer
        assert f"field '{field}' has {len(over)} events" in answer.decode()
    at_limit = [{"event": "just.enough"}] * MAX_EVENTS_PER_REQUEST
    status, _, answer = post(url + "/v1/events", json.dumps({"events": at_limit}).encode(), plain)
    assert status == 202, answer
    assert json.loads(answer)["accepted"] == MAX_EVENTS_PER_REQUEST
    counters = wait_for_counters(daemon, MAX_EVENTS_PER_REQUEST + 2)
    assert counters["stored"] == MAX_EVENTS_PER_REQUEST
    assert counters["rejected"] == 2  # each refused request counts as one thing not taken


# --- loopback addresses other than 127.0.0.1 ----------------------------------------------


def loopback_daemon(daemon_factory: DaemonFactory, http_host: str) -> DaemonProcess:
    home = make_home()
    (home / "config.toml").write_text(f'http_host = "{http_host}"\n')
    return daemon_factory({"AGENT_TELEMETRY_RATE_LIMIT": "off"}, home=home)


def test_ipv6_loopback_url_has_brackets_and_its_own_origin_is_allowed(
    daemon_factory: DaemonFactory,
) -> None:
    daemon = loopback_daemon(daemon_factory, "::1")
    url = daemon.http_url()
    assert url.startswith("http://[::1]:")
    status, body = post_events(url, [{"event": "v6"}], headers={"Origin": url})
    assert status == 202, body
    status, _ = post_events(url, [{"event": "v6"}], headers={"Origin": "http://evil.example"})
    assert status == 403


def test_another_127_address_is_served_not_refused_by_the_host_check(
    daemon_factory: DaemonFactory,
) -> None:
    daemon = loopback_daemon(daemon_factory, "127.0.0.2")
    url = daemon.http_url()
    assert url.startswith("http://127.0.0.2:")
    status, body = post_events(url, [{"event": "two"}], headers={"Origin": url})
    assert status == 202, body
    status, _ = post_events(url, [{"event": "two"}], headers={"Host": "evil.example"})
    assert status == 403


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1:7468", True),
        ("127.0.0.2", True),
        ("127.255.255.254:80", True),
        ("localhost:7468", True),
        ("LOCALHOST", True),
        ("[::1]:7468", True),
        ("[::1]", True),
        ("::1", True),
        ("localhost.", True),
        ("LOCALHOST.:7468", True),
        ("127.0.0.1.:7468", True),
        ("", False),
        (".", False),
        ("localhost..", False),
        ("localhost.evil.example.", False),
        ("evil.example", False),
        ("127.0.0.1.evil.example:7468", False),
        ("128.0.0.1", False),
        ("[::ffff:127.0.0.1]:7468", False),
        ("[::2]:7468", False),
        ("0.0.0.0:7468", False),
        ("2130706433", False),
    ],
)
def test_host_check_accepts_what_config_accepts(host: str, loopback: bool) -> None:
    assert is_loopback_host(host) is loopback


def test_full_host_names_and_an_http10_request_without_host_are_served(
    daemon: DaemonProcess,
) -> None:
    """`curl http://localhost.:PORT` and an HTTP/1.0 client that sends no Host (no browser
    does either, so neither is a web page's request) post like any local client."""
    port = int(daemon.http_url().rsplit(":", 1)[1])
    body = b'{"event": "%s"}'
    requests = {
        "full.name": b"POST /v1/events HTTP/1.1\r\nHost: localhost.:%d\r\n" % port,
        "no.host": b"POST /v1/events HTTP/1.0\r\n",
    }
    for event, head in requests.items():
        payload = body % event.encode()
        with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
            sock.sendall(head + b"Connection: close\r\nContent-Length: %d\r\n\r\n" % len(payload))
            sock.sendall(payload)
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
        assert answer.split(b" ", 2)[1] == b"202", answer
    assert {"full.name", "no.host"} <= {row["event"] for row in daemon.export()}
    # A Host that is there and is not loopback is refused as before, on HTTP/1.0 too.
    status, _ = post_events(daemon.http_url(), [{"event": "x"}], headers={"Host": "evil.example."})
    assert status == 403


@pytest.mark.parametrize(
    ("http_host", "accepted"),
    [
        ("127.0.0.1", "127.0.0.1"),
        ("127.0.0.2", "127.0.0.2"),
        ("localhost", "127.0.0.1"),
        ("::1", "::1"),
        ("0:0:0:0:0:0:0:1", "::1"),
        ("::ffff:127.0.0.1", None),
        ("0.0.0.0", None),
    ],
)
def test_config_takes_the_loopback_addresses_the_host_check_takes(
    tmp_path: Path, http_host: str, accepted: str | None
) -> None:
    (tmp_path / "config.toml").write_text(f'http_host = "{http_host}"\n')
    paths = resolve_paths({"AGENT_TELEMETRY_HOME": str(tmp_path)})
    if accepted is None:
        with pytest.raises(ConfigError, match="loopback"):
            load_config({}, paths)
        return
    config = load_config({}, paths)
    assert config.http_host == accepted
    assert is_loopback_host(f"[{accepted}]" if ":" in accepted else accepted)
