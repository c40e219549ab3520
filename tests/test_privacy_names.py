"""Names are content: secrets and addresses used as property keys (top level and nested) or
as the source name (the `agent` field, the X-Agent-Name header, PostHog's `$lib`) never
reach the buffer, its WAL, an export, the static report or what the file sender writes."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

from agent_telemetry._wire import encode_event
from tests.conftest import DaemonFactory
from tests.daemon_process import DaemonProcess, make_home
from tests.test_daemon_ingest import post_events, send_lines, wait_for_rows

# The alphanumeric core of each canary is what is searched for: no escaping (JSON, HTML,
# percent-encoding) can change it, so finding none of them means none got through.
GITHUB_CORE = "Qm7xTz2Lw9Kp4Rv8Ns3Hd6Jf1Gb5Yc0Ue7Ai9Oq"[:36]
ANTHROPIC_CORE = "Zc4Vn8Mb2Xq6Lk0Jh5Gf9Ds3Ap7Wo1Ei4Ru8Ty2"
CANARIES = {
    "ghp_" + GITHUB_CORE: GITHUB_CORE,
    "sk-ant-api03-" + ANTHROPIC_CORE: ANTHROPIC_CORE,
    "wren.canary@example.com": "wren",
    "ola7.probe@mail.example.org": "ola7",
}
GITHUB, ANTHROPIC, EMAIL, OTHER_EMAIL = CANARIES


def _names_properties() -> dict[str, object]:
    return {
        EMAIL: 1,
        GITHUB: 2,
        OTHER_EMAIL: 3,
        "nested": {ANTHROPIC: {EMAIL: True}, "list": [{GITHUB: "x"}]},
        "duration_ms": 5,
    }


def _post_posthog(url: str, lib: str | None, headers: dict[str, str] | None = None) -> int:
    properties = {"distinct_id": "d"} if lib is None else {"$lib": lib, "distinct_id": "d"}
    body = {"api_key": "phc_local", "batch": [{"event": "sdk.names", "properties": properties}]}
    request = urllib.request.Request(
        f"{url}/batch/",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", **(headers or {})},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.status


def _send_every_route(url: str, ingest_socket: Path) -> int:
    """Each canary as a key and as a source, over every route; returns the events sent."""
    sent = 0
    for agent in CANARIES:
        assert post_events(url, [{"event": "http.names", "agent": agent}])[0] == 202
        assert post_events(url, [{"event": "hdr.names"}], {"X-Agent-Name": agent})[0] == 202
        assert _post_posthog(url, agent) == 200
        assert _post_posthog(url, None, {"X-Agent-Name": agent}) == 200
        sent += 4
    status, _ = post_events(url, [{"event": "keys.names", "properties": _names_properties()}])
    assert status == 202
    line = encode_event("sock.names", _names_properties(), agent=ANTHROPIC, now_ms=1_800_000_000)
    send_lines(ingest_socket, line)
    return sent + 2


def _leaks(blob: bytes) -> list[str]:
    return [core for core in CANARIES.values() if core.encode() in blob]


def uploading_to_a_file(daemon_factory: DaemonFactory) -> tuple[DaemonProcess, Path]:
    """A daemon in mode upload whose sender appends what it sends to a file: every byte
    that would leave the machine can be read back."""
    home = make_home()
    sent_file = home / "sent.ndjson"
    daemon = daemon_factory(
        {
            "AGENT_TELEMETRY_MODE": "upload",
            "AGENT_TELEMETRY_SENDER": "file",
            "AGENT_TELEMETRY_FILE": str(sent_file),
            "AGENT_TELEMETRY_RATE_LIMIT": "off",
        },
        home=home,
    )
    return daemon, sent_file


def test_canaries_in_names_reach_no_file_and_no_output(daemon_factory: DaemonFactory) -> None:
    daemon, sent_file = uploading_to_a_file(daemon_factory)
    expected = _send_every_route(daemon.http_url(), daemon.ingest_socket)
    assert wait_for_rows(daemon, expected)["buffer"]["events"] == expected

    rows = daemon.export()
    export_text = daemon.cli("export", "--format", "ndjson").stdout
    assert len(rows) == expected and not _leaks(export_text.encode())
    # The events are there, with their names replaced, not dropped: the markers show.
    (keyed,) = [r for r in rows if r["event"] == "keys.names"]
    assert keyed["properties"] == {
        "[email]": 1,
        "[secret]": 2,
        "[email]#2": 3,
        "nested": {"[secret]": {"[email]": True}, "list": [{"[secret]": "x"}]},
        "duration_ms": 5,
    }
    agents = {r["agent"] for r in rows if r["event"] != "keys.names"}
    assert agents == {"[email]", "[secret]"}, agents

    wal = daemon.database.with_name(daemon.database.name + "-wal")
    assert wal.exists() and wal.stat().st_size > 0
    assert not _leaks(daemon.database.read_bytes()), "buffer"
    assert not _leaks(wal.read_bytes()), "buffer -wal"

    report = daemon.home / "report.html"
    daemon.cli("report", "-o", str(report))
    assert "[email]" in report.read_text() and not _leaks(report.read_bytes())

    daemon.cli("flush")
    uploaded = sent_file.read_bytes()
    assert len(uploaded.splitlines()) == expected and not _leaks(uploaded)
    assert not _leaks(daemon.log().encode())
