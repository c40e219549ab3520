"""Pieces upgraded (or downgraded) one at a time, as users do: a buffer, a config or a shim
from another version than the daemon's meets the daemon and the commands of this one."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path

from agent_telemetry._wire import encode_event
from agent_telemetryd.store.migrations import SCHEMA_VERSION
from tests.conftest import DaemonFactory
from tests.fakes.upload_helpers import flush_json
from tests.test_daemon_ingest import post_events, send_lines, wait_for_rows
from tests.test_privacy_names import uploading_to_a_file
from tests.test_spool_intake import wait_until_taken


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
