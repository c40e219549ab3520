"""Pieces upgraded (or downgraded) one at a time, as users do: a buffer, a config or a shim
from another version than the daemon's meets the daemon and the commands of this one."""

from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent_telemetry._wire import encode_event
from agent_telemetryd.store import analytics_fold, dashboard_sql
from agent_telemetryd.store.database import open_buffer
from agent_telemetryd.store.migrations import SCHEMA_VERSION
from tests.conftest import DaemonFactory
from tests.fakes.posthog_backend import FakePostHog
from tests.fakes.upload_helpers import flush_json, posthog_env
from tests.shim_agents import agent_env, make_home
from tests.shim_listener import Listener
from tests.test_daemon_ingest import post_events, send_lines, wait_for_rows
from tests.test_privacy_names import uploading_to_a_file
from tests.test_shim_node import NODE_SHIM
from tests.test_spool_intake import wait_until_taken
from tests.tools import required_tool

FIXTURES = Path(__file__).parent / "fixtures"
STATES = ("events", "sent", "pending_upload", "local_only", "rate_limited", "quarantined")


@pytest.fixture
def posthog() -> Iterator[FakePostHog]:
    backend = FakePostHog().start()
    yield backend
    backend.stop()


def newer_shim_line(event: str, **fields: object) -> bytes:
    """The line this version's shim writes for `event`, with `fields` added as a newer
    shim's would be: fields this daemon has never heard of."""
    line = encode_event(event, {"n": 1}, agent="agent")
    return (
        line[:-2]
        + b"".join(b',"%s":%s' % (k.encode(), json.dumps(v).encode()) for k, v in fields.items())
        + b"}\n"
    )


def buffer_digests(database: Path) -> dict[str, str]:
    """The buffer and its side files (WAL, shm, salts), by name: what a reader must not touch."""
    return {
        path.name: hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(database.parent.glob(f"{database.name}*"))
    }


def test_a_buffer_from_a_newer_version_is_named_by_status_export_and_doctor_and_left_as_is(
    daemon_factory: DaemonFactory,
) -> None:
    """After a downgrade, the commands of the older version do not read the newer buffer as
    their own (status counting its tables, doctor saying all is well while the daemon
    refuses to start): each names both schema versions and the way out, and no byte of
    the buffer's files changes, the daemon's failed start included."""
    daemon = daemon_factory()
    post_events(daemon.http_url(), [{"event": "kept"}])
    daemon.stop()
    newer = SCHEMA_VERSION + 1
    conn = sqlite3.connect(daemon.database)
    conn.execute(f"PRAGMA user_version = {newer}")
    conn.close()
    before = buffer_digests(daemon.database)
    said = (
        f"written by a newer agent-telemetry (buffer schema {newer}; "
        f"this version reads up to {SCHEMA_VERSION})"
    )

    status = daemon.cli("status")
    assert said in status.stdout and "install the newer agent-telemetry again" in status.stdout
    assert said in json.loads(daemon.cli("status", "--json").stdout)["buffer_error"]
    exported = daemon.cli("export", check=False)
    assert exported.returncode == 1 and exported.stdout == ""
    assert said in exported.stderr and "move the file aside" in exported.stderr
    doctor = json.loads(daemon.cli("doctor", "--json", check=False).stdout)
    (buffer,) = [check for check in doctor["checks"] if check["name"] == "buffer"]
    assert buffer["verdict"] == "fail" and said in buffer["detail"]
    assert "will not start" in buffer["detail"]

    daemon.start(wait=False)
    assert daemon.proc is not None and daemon.proc.wait(15) == 3
    assert buffer_digests(daemon.database) == before


def test_a_newer_shims_lines_are_kept_local_not_refused(daemon_factory: DaemonFactory) -> None:
    """An agent's shim upgraded past the daemon sends fields the daemon does not know, on a
    socket that answers nothing: refused, every event of that agent was lost. They are
    kept, on the machine only (such a field may limit where the event may go, as
    local_only does), status counts them, and the known fields are checked as ever."""
    daemon, sent_file = uploading_to_a_file(daemon_factory)
    send_lines(
        daemon.ingest_socket,
        newer_shim_line("newer.step", sample_rate=0.5)
        + newer_shim_line("newer.private", sample_rate=1, local_only=False)
        + encode_event("today.step", agent="agent")
        + newer_shim_line("bad", sample_rate=1, local_only="yes")
        + b'{"event": 7, "sample_rate": 1}\n',
    )
    status = wait_for_rows(daemon, 3)
    assert status["counters"]["rejected"] == 2
    assert status["counters"]["kept_local_unknown_fields"] == 4
    assert "newer shims:  4 events carried fields" in daemon.cli("status").stdout

    # Taken from a spool file too (the agent ran while the daemon was down).
    folder = daemon.home / "data" / "spool"
    folder.mkdir(mode=0o700, exist_ok=True)
    (folder / "4242-0123456789ab.ndjson").write_bytes(newer_shim_line("newer.spooled", x=[1]))
    send_lines(daemon.ingest_socket, b"")  # an agent connects: the daemon looks at the spool
    wait_until_taken(daemon, 4)

    assert flush_json(daemon)["events_sent"] == 1
    assert [json.loads(line)["event"] for line in sent_file.read_text().splitlines()] == [
        "today.step"
    ]
    rows = {row["event"]: row for row in daemon.export()}
    assert {name: row["upload"] for name, row in rows.items()} == {
        "newer.step": "local",
        "newer.private": "local",
        "today.step": "sent",
        "newer.spooled": "local",
    }
    assert rows["newer.step"]["properties"] == {"n": 1}
    for path in daemon.database.parent.glob(f"{daemon.database.name}*"):
        assert b"sample_rate" not in path.read_bytes(), path
    assert "event_kept_local_unknown_fields" in daemon.log()
    assert "sample_rate" not in daemon.log()


def test_a_buffer_an_older_release_wrote_is_upgraded_with_nothing_lost_or_sent_twice(
    daemon_factory: DaemonFactory, posthog: FakePostHog
) -> None:
    """buffer_v12.sql is what the release at 7422412 wrote (schema 12; made by
    fixtures/make_old_buffer.py): events sent, one quarantined, local, pending, waiting on
    the rate limit and rate_limited past its backlog, metric points, rollups folded up to
    a point. This version migrates it (13 to 15 refold the analytics) and must keep every
    count the old status gave, every exported row (the waiting ones pending still), the
    anonymous id, the same analytics as the events themselves say, and upload only what
    was still to go."""
    old_status = json.loads((FIXTURES / "buffer_v12.status.json").read_text())
    old_rows = [
        json.loads(line)
        for line in (FIXTURES / "buffer_v12.export.ndjson").read_text().splitlines()
    ]
    daemon = daemon_factory(
        posthog_env(
            posthog.url,
            AGENT_TELEMETRY_MODE="upload",
            AGENT_TELEMETRY_RATE_LIMIT="3/min",
            AGENT_TELEMETRY_RATE_LIMIT_BACKLOG="4",
            # The fixture's events keep the dates they were made on.
            AGENT_TELEMETRY_RETENTION_DAYS="36500",
        ),
        start=False,
    )
    daemon.database.parent.mkdir(parents=True, mode=0o700)
    conn = sqlite3.connect(daemon.database)
    conn.executescript((FIXTURES / "buffer_v12.sql").read_text())
    conn.close()
    since = ["--since", str(min(row_ms(row) for row in old_rows) - 3_600_000)]
    # Read before the daemon ever opened it: straight from the events, by today's rules.
    from_events = {
        view: json.loads(daemon.cli("stats", view, *since, "--json").stdout)
        for view in ("models", "tools", "runs")
    }

    daemon.start()
    status = daemon.status()
    assert {s: status["buffer"][s] for s in STATES} == {s: old_status["buffer"][s] for s in STATES}
    assert status["anonymous_id"] == old_status["anonymous_id"]
    for counter in ("received", "rejected", "dropped_by_reason"):
        assert status["counters"][counter] == old_status["counters"][counter]
    rows = daemon.export()
    assert len(rows) == len(old_rows)
    assert [{key: row[key] for key in old} for row, old in zip(rows, old_rows, strict=True)] == (
        old_rows
    )

    report = flush_json(daemon)
    sent = {event["uuid"] for event in posthog.accepted_events()}
    still_to_go = {row["uuid"] for row in old_rows if row["upload"] == "pending"}
    assert report["events_sent"] == len(sent) > 0 and sent <= still_to_go
    quarantined = [row["uuid"] for row in old_rows if row["upload"] == "quarantined"]
    listed = json.loads(daemon.cli("quarantine", "--json").stdout)
    assert [event["uuid"] for event in listed["events"]] == quarantined

    # Migration 14 emptied the rollups for a refold; folded all the way (as the daemon does
    # once enough events wait), they say what the events said.
    daemon.stop()
    conn = open_buffer(daemon.database)
    assert dashboard_sql.fold_all(conn) + analytics_fold.fold_all(conn) > 0
    conn.close()
    assert from_events["models"]["models"][0]["calls"] == 7, from_events["models"]
    for view, expected in from_events.items():
        assert json.loads(daemon.cli("stats", view, *since, "--json").stdout) == expected, view


def row_ms(row: dict[str, object]) -> int:
    from datetime import datetime

    stamp = str(row["received_at"]).replace("Z", "+00:00")
    return int(datetime.fromisoformat(stamp).timestamp() * 1000)


def test_a_setting_from_a_newer_version_keeps_the_daemon_running_with_uploads_held(
    daemon_factory: DaemonFactory, posthog: FakePostHog
) -> None:
    """After a downgrade the config may hold keys only the newer version knows. The daemon
    refused to start on them, so the service stayed down and agents' events piled up in
    the spool until it was full. It now runs and keeps events, but uploads nothing while
    they are there (such a key may limit what is sent); status of the flush and doctor
    name them. Removed, a reload lets the events go."""
    daemon = daemon_factory(
        posthog_env(posthog.url, AGENT_TELEMETRY_MODE="upload", AGENT_TELEMETRY_RATE_LIMIT="off"),
        start=False,
    )
    config = daemon.home / "config.toml"
    config.write_text('upload_interval = "1h"\nsample_rate = 0.5\n[privacy]\nredact_paths = true\n')
    daemon.start()
    post_events(daemon.http_url(), [{"event": "kept"}, {"event": "also kept"}])
    assert "Warning:" in daemon.log() and "sample_rate: unknown setting" in daemon.log()

    report = flush_json(daemon)
    assert report["events_sent"] == 0 and posthog.accepted_events() == []
    assert "sample_rate, privacy.redact_paths" in report["skipped"]
    assert "sample_rate, privacy.redact_paths" in daemon.cli("preview").stdout
    assert daemon.status()["buffer"]["pending_upload"] == 2
    assert "uploads held: the config has settings" in daemon.cli("status").stdout
    doctor = json.loads(daemon.cli("doctor", "--json", check=False).stdout)
    (check,) = [c for c in doctor["checks"] if c["name"] == "config"]
    assert check["verdict"] == "warn" and "privacy.redact_paths" in check["detail"]
    assert "upgrade agent-telemetry" in check["fix"]

    config.write_text('upload_interval = "1h"\n')
    assert daemon.cli("reload").returncode == 0
    assert flush_json(daemon)["events_sent"] == 2
    assert sorted(e["event"] for e in posthog.accepted_events()) == ["also kept", "kept"]


# The fields the daemon released before `local_only` took (any other it refused).
FIELDS_OLDER_DAEMONS_TAKE = {
    "event",
    "properties",
    "timestamp",
    "uuid",
    "agent",
    "trace_id",
    "span_id",
    "parent_span_id",
}
PYTHON_AGENT = """
from agent_telemetry import flush, span, track
track("step", {"n": 1}, timestamp="2026-11-24T21:00:00.123Z", uuid="{uuid}", agent="py")
with span("run", {"model": "m"}):
    track("inner")
flush(10)
"""
NODE_AGENT = """
const t = require(process.argv[1]);
t.track('step', {n: 1}, {timestamp: '2026-11-24T21:00:00.123Z', agent: 'node'});
t.span('run', {model: 'm'}, () => t.track('inner'));
t.flush(10000);
"""


@pytest.mark.parametrize("do_not_track", ["", "1"])
def test_upgraded_shims_send_a_newer_field_only_when_it_says_something(do_not_track: str) -> None:
    """A shim upgraded in an agent's project beside an older daemon: every line it writes
    with each option of track() and span() holds only fields older daemons take, unless
    DO_NOT_TRACK asks for `local_only` (which they refuse rather than upload)."""
    home = make_home()
    listener = Listener(home / "run" / "ingest.sock")
    try:
        env = agent_env(home, DO_NOT_TRACK=do_not_track)
        agent = PYTHON_AGENT.replace("{uuid}", str(uuid.uuid4()))
        subprocess.run([sys.executable, "-c", agent], env=env, check=True, timeout=30)
        node = required_tool("nodejs", "node")
        script = str(NODE_SHIM / "index.js")
        subprocess.run([node, "-e", NODE_AGENT, script], env=env, check=True, timeout=30)
        events = listener.events(6)
    finally:
        listener.close()
        shutil.rmtree(home, ignore_errors=True)
    assert len(events) == 6
    extra = {"local_only"} if do_not_track else set()
    for event in events:
        assert set(event) - FIELDS_OLDER_DAEMONS_TAKE == extra, event
