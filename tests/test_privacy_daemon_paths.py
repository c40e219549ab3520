"""Secrets that once slipped past the scrubber, sent to a real daemon by OTLP, HTTP and
the shim's socket: none of them is in the buffer file, its -wal, an export, the upload or
the daemon's log, and the events are there with markers in their place."""

from __future__ import annotations

from agent_telemetry._wire import encode_event
from tests.conftest import DaemonFactory
from tests.otlp_messages import span, traces
from tests.test_daemon_ingest import post_events, send_lines, wait_for_rows
from tests.test_otlp_receiver import PROTOBUF, buffer_bytes, post
from tests.test_privacy_names import uploading_to_a_file

# Each core is what is searched for: no escaping can change it.
BASIC = "QmVhckNhbmFyeQ"  # base64 of a user:password: short, plain letters, a credential
OPTION = "optcanary42"
DJANGO = "djangocanary7"
REDIS_TAIL = "redistail9"
GROQ = "gsk_" + "Qm7xTz2Lw9Kp4Rv8Ns3Hd6Jf1Gb5Yc0Ue7Ai9OqZc4Vn8Mb2X"
OWNER = "ownercanary5"
NOW = 1_800_000_000_000
CORES = (BASIC, OPTION, DJANGO, REDIS_TAIL, GROQ[4:], OWNER)


def _attributes() -> dict[str, object]:
    return {
        "http.request.header.authorization": [f"Basic {BASIC}"],
        "process.command_args": ["mysql", "--password", OPTION, "-u", "root"],
        "exception.message": f"settings: SECRET_KEY={DJANGO}",
        "db.connection_string": f"redis://:p@{REDIS_TAIL}@cache.internal:6379",
        "note": f"key {GROQ}",
        "gen_ai.request.model": "gpt-4o",
    }


def _leaks(blob: bytes) -> list[str]:
    return [core for core in CORES if core.encode() in blob]


def test_secrets_once_missed_reach_no_file_and_no_output(daemon_factory: DaemonFactory) -> None:
    daemon, sent_file = uploading_to_a_file(daemon_factory)
    # The resource as the Node SDK's process detector fills it: the OS account's name.
    resource = {"service.name": "planner", "process.owner": OWNER}
    body = traces(span("db query", attributes=_attributes()), resource=resource)
    body = body.SerializeToString()
    assert post(f"{daemon.http_url()}/v1/traces", body, PROTOBUF)[0] == 200
    assert (
        post_events(daemon.http_url(), [{"event": "http.run", "properties": _attributes()}])[0]
        == 202
    )
    send_lines(daemon.ingest_socket, encode_event("sock.run", _attributes(), now_ms=1_800_000_000))
    wait_for_rows(daemon, 4)  # three events and the OTLP resource

    rows = {row["event"]: row["properties"] for row in daemon.export()}
    assert rows["otel.resource"]["process.owner"] == "[user]"
    for name in ("db query", "http.run", "sock.run"):
        properties = rows[name]
        assert properties["http.request.header.authorization"] == ["[secret]"], name
        assert properties["process.command_args"] == [
            "mysql",
            "--password",
            "[secret]",
            "-u",
            "root",
        ]
        assert properties["exception.message"] == "settings: SECRET_KEY=[secret]"
        assert properties["db.connection_string"] == "redis://[secret]@cache.internal:6379"
        assert properties["note"] == "key [secret]"
    assert not _leaks(buffer_bytes(daemon)), "buffer"
    assert not _leaks(daemon.cli("export", "--format", "csv").stdout.encode()), "export"

    daemon.cli("flush")
    assert sent_file.stat().st_size > 0 and not _leaks(sent_file.read_bytes()), "upload"
    assert not _leaks(daemon.log().encode()), "log"


def test_a_secret_named_by_its_neighbour_is_redacted_on_every_shim_line(
    daemon_factory: DaemonFactory,
) -> None:
    daemon = daemon_factory({"AGENT_TELEMETRY_RATE_LIMIT": "off"})
    # The same shape in the same second, line after line: once the first has taught the
    # daemon both, the others take the known-shapes path.
    for n in range(3):
        properties = {"name": "openai_api_key", "value": f"pair{n}canary"}
        send_lines(daemon.ingest_socket, encode_event("setting.changed", properties, now_ms=NOW))
        wait_for_rows(daemon, n + 1)
    assert [row["properties"] for row in daemon.export()] == [
        {"name": "openai_api_key", "value": "[secret]"}
    ] * 3
    assert b"canary" not in buffer_bytes(daemon)
