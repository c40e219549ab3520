"""Pieces upgraded (or downgraded) one at a time, as users do: a buffer, a config or a shim
from another version than the daemon's meets the daemon and the commands of this one."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path

from agent_telemetryd.store.migrations import SCHEMA_VERSION
from tests.conftest import DaemonFactory
from tests.test_daemon_ingest import post_events


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
