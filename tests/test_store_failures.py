"""The buffer under pressure: a full disk, the row cap, retention, a foreign user."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent_telemetryd.store.buffer import Buffer
from agent_telemetryd.store.database import open_buffer
from agent_telemetryd.store.rows import EventRow
from agent_telemetryd.store.writer import Writer
from tests.conftest import DaemonFactory, mounted_tmpfs
from tests.daemon_process import DaemonProcess
from tests.test_daemon_ingest import post_events, send_lines, wait_for_rows


def buffer_row(number: int, received_ms: int) -> EventRow:
    """One row as the ingest path hands it to the writer (uuid ends in `number`)."""
    uuid = f"00000000-0000-7000-8000-{number:012d}"
    return EventRow(uuid, "e", received_ms, received_ms, "{}", "a", None, "http", "local",
                    "local", "id", "t")  # fmt: skip


@pytest.fixture
def tiny_disk() -> Iterator[Path]:
    """A 1 MiB tmpfs."""
    with mounted_tmpfs("1m") as mount_point:
        yield mount_point


def _started_on(daemon_factory: DaemonFactory, disk: Path) -> DaemonProcess:
    """A daemon whose data folder is on `disk`."""
    daemon = daemon_factory(start=False)
    (daemon.home / "data").symlink_to(disk)
    daemon.start()
    return daemon


def _fill_until_refused(url: str) -> list[int]:
    """Batches of 50 padded events until one is refused (or 40 went in): each status."""
    padding = "x" * 2000
    codes = []
    for batch in range(40):
        events = [
            {"event": "fill", "properties": {"b": batch, "i": i, "p": padding}} for i in range(50)
        ]
        codes.append(post_events(url, events)[0])
        if codes[-1] == 503:
            break
    return codes


def _send_while_full(daemon: DaemonProcess) -> dict[str, Any]:
    """Ten lines on ingest.sock to a full buffer; the status once they are counted."""
    send_lines(daemon.ingest_socket, b'{"event": "while.full"}\n' * 10)
    deadline = time.monotonic() + 20
    status = daemon.status()
    while status["counters"]["dropped_by_reason"].get("write_error", 0) < 10:
        assert time.monotonic() < deadline, "the lines were never counted"
        time.sleep(0.05)
        status = daemon.status()
    return status


def test_a_full_disk_refuses_http_with_503_and_never_stops_ingest(
    daemon_factory: DaemonFactory, tiny_disk: Path
) -> None:
    daemon = _started_on(daemon_factory, tiny_disk)
    url = daemon.http_url()
    codes = _fill_until_refused(url)
    assert codes[-1] == 503, "the disk never filled"
    assert set(codes[:-1]) == {202}
    # ingest.sock keeps taking connections; what cannot be written is counted, not hidden.
    status = _send_while_full(daemon)
    assert status["running"] is True
    dropped = status["counters"]["dropped_by_reason"]
    assert dropped.get("write_error", 0) >= 10
    accounted = status["counters"]["stored"] + status["counters"]["rejected"]
    assert accounted + status["counters"]["dropped"] == status["counters"]["received"]
    assert "buffer_write_failed" in daemon.log()
    assert daemon.stop() == 0


def test_row_cap_evicts_oldest_sent_then_refuses_new(daemon_factory: DaemonFactory) -> None:
    sent_file = "sent.ndjson"
    daemon = daemon_factory(
        {
            "AGENT_TELEMETRY_MAX_EVENTS": "100",
            "AGENT_TELEMETRY_MODE": "upload",
            "AGENT_TELEMETRY_SENDER": "file",
            "AGENT_TELEMETRY_RATE_LIMIT": "off",
        }
    )
    daemon.env["AGENT_TELEMETRY_FILE"] = str(daemon.home / sent_file)
    daemon.stop()
    daemon.start()
    url = daemon.http_url()
    post_events(url, [{"event": "first", "properties": {"i": i}} for i in range(60)])
    daemon.cli("flush")
    post_events(url, [{"event": "second", "properties": {"i": i}} for i in range(40)])
    # Full: 60 sent + 40 pending. 30 more evict the 30 oldest sent rows.
    assert (
        post_events(url, [{"event": "third", "properties": {"i": i}} for i in range(30)])[0] == 202
    )
    rows = daemon.export()
    assert len(rows) == 100
    assert [r["properties"]["i"] for r in rows if r["event"] == "first"] == list(range(30, 60))
    # 50 more: the last 30 sent rows go; then only unsent rows are left, which are never
    # evicted for space, so the other 20 new events are refused and counted.
    daemon.cli("mode", "local")
    status, body = post_events(url, [{"event": "fourth"}] * 50)
    assert status == 202 and body["accepted"] == 30 and body["refused_buffer_full"] == 20
    assert not [r for r in daemon.export() if r["event"] == "first"]
    counters = daemon.status()["counters"]
    assert counters["dropped_by_reason"]["evicted_sent"] == 60
    assert counters["dropped_by_reason"]["buffer_full"] == 20
    assert counters["received"] == counters["stored"] + counters["rejected"] + counters["dropped"]


def test_byte_cap_evicts_sent_rows_before_it_refuses_any(daemon_factory: DaemonFactory) -> None:
    """At the byte cap with every stored event sent, new events take the place of the
    oldest sent ones. A slice of deleted rows frees no whole page at first, and small
    requests were then refused ("buffer full", 503) half the time, thousands of sent
    rows still there to evict."""
    daemon = daemon_factory(start=False)
    daemon.env.update(
        AGENT_TELEMETRY_MAX_BYTES=str(1024 * 1024),
        AGENT_TELEMETRY_MODE="upload",
        AGENT_TELEMETRY_SENDER="file",
        AGENT_TELEMETRY_FILE=str(daemon.home / "sent.ndjson"),
        AGENT_TELEMETRY_RATE_LIMIT="off",
    )
    daemon.start()
    url = daemon.http_url()
    for batch in range(200):
        status, body = post_events(url, [{"event": "fill", "properties": {"b": batch}}] * 100)
        if status != 202 or body.get("refused_buffer_full"):
            break
    else:
        raise AssertionError("the byte cap was never reached")
    daemon.cli("flush")
    before = daemon.status()
    assert before["buffer"]["sent"] == before["buffer"]["events"] > 1000
    answers = [post_events(url, [{"event": "after.flush"}] * 5) for _ in range(30)]
    assert [(status, body["accepted"]) for status, body in answers] == [(202, 5)] * 30
    after = daemon.status()
    dropped = after["counters"]["dropped_by_reason"]
    assert dropped["buffer_full"] == before["counters"]["dropped_by_reason"]["buffer_full"]
    assert after["buffer"]["pending_upload"] == 150 and after["buffer"]["sent"] > 0
    counters = after["counters"]
    assert counters["received"] == counters["stored"] + counters["rejected"] + counters["dropped"]


def test_retention_purges_only_events_older_than_the_window(tmp_path: Path) -> None:
    async def scenario() -> tuple[dict[str, int], list[int]]:
        buffer = await Buffer.open(
            tmp_path / "b.sqlite3", max_events=1000, max_bytes=10**9, retention_days=90
        )
        try:
            day = 86_400_000
            now_ms = int(time.time() * 1000)
            rows = [buffer_row(age, now_ms - age * day) for age in (200, 91, 89, 1, 0)]
            ack = buffer.writer.submit(rows, {"received": 5}, ack=True)
            assert ack is not None
            await ack
            # The hourly retention job runs at open as well; either run may do the purge.
            await buffer.purge_expired()
            ages = await buffer.read(
                lambda c: [int(u[-12:]) for (u,) in c.execute("SELECT uuid FROM events")]
            )
            counts = await buffer.read(
                lambda c: dict(c.execute("SELECT name, value FROM counters"))
            )
            return counts, sorted(ages)
        finally:
            await buffer.close()

    counts, ages = asyncio.run(scenario())
    assert ages == [0, 1, 89]
    assert counts["dropped.retention"] == 2 and counts["stored"] == 3


def test_a_foreign_user_cannot_use_the_sockets(daemon: DaemonProcess) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to connect as another user")
    # Loosen the file modes as a careless admin might: the uid check must still refuse.
    daemon.home.chmod(0o755)
    daemon.ingest_socket.parent.chmod(0o755)
    daemon.ingest_socket.chmod(0o666)
    daemon.api_socket.chmod(0o666)
    script = f"""
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.connect({str(daemon.ingest_socket)!r})
try:
    s.sendall(b'{{"event": "from.nobody"}}\\n')
except (BrokenPipeError, ConnectionResetError):
    pass  # the daemon may hang up on a foreign peer before the line is written
s.close()
a = socket.socket(socket.AF_UNIX)
a.connect({str(daemon.api_socket)!r})
a.sendall(b"GET /v1/status HTTP/1.1\\r\\nHost: localhost\\r\\nConnection: close\\r\\n\\r\\n")
print(a.recv(100).split(b"\\r\\n")[0].decode())
"""
    result = subprocess.run(
        [
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            sys.executable,
            "-c",
            script,
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    assert "403" in result.stdout
    send_lines(daemon.ingest_socket, json.dumps({"event": "from.owner"}).encode() + b"\n")
    wait_for_rows(daemon, 1)
    # The foreign connection came first and was refused at accept (logged then), so its
    # line was never read: nothing of it can land after this.
    deadline = time.monotonic() + 20
    while "foreign_peer_refused" not in daemon.log():
        assert time.monotonic() < deadline, "the foreign peer was never refused"
        time.sleep(0.05)
    assert [r["event"] for r in daemon.export()] == ["from.owner"]
    assert "foreign_peer_refused" in daemon.log()


def test_writer_survives_a_failed_commit_and_writes_again(tmp_path: Path) -> None:
    async def scenario() -> tuple[int, int]:
        buffer = await Buffer.open(
            tmp_path / "b.sqlite3", max_events=1000, max_bytes=10**9, retention_days=90
        )
        writer: Writer = buffer.writer
        try:
            row = buffer_row(1, 1)
            bad = row[:-1]  # a value short: the whole group fails to commit
            failed = writer.submit([bad], {"received": 1}, ack=True)
            assert failed is not None
            with pytest.raises(Exception, match="buffer write failed"):
                await failed
            ok = writer.submit([row], {"received": 1}, ack=True)
            assert ok is not None
            result = await ok
            lost = await buffer.read(
                lambda conn: conn.execute(
                    "SELECT value FROM counters WHERE name = 'dropped.write_error'"
                ).fetchone()[0]
            )
            return result.inserted, lost
        finally:
            await buffer.close()

    assert asyncio.run(scenario()) == (1, 1)


def test_a_locked_buffer_is_not_taken_for_a_corrupt_one(tmp_path: Path) -> None:
    """Busy, full or read-only is the user's data intact: never moved aside for it."""
    path = tmp_path / "buffer.sqlite3"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("PRAGMA journal_mode = WAL")
    holder.execute("BEGIN IMMEDIATE")  # holds the write lock the migrations need
    try:
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            open_buffer(path)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert not list(tmp_path.glob("*.corrupt-*"))
    open_buffer(path).close()  # and once the lock is gone it opens as usual


def _file_counters(path: Path) -> dict[str, int]:
    conn = sqlite3.connect(path)
    try:
        return {name: value for name, value in conn.execute("SELECT name, value FROM counters")}
    finally:
        conn.close()


def test_the_counts_of_a_failed_commit_are_written_with_the_next_one(tmp_path: Path) -> None:
    """received and dropped.write_error reach the file together, so the accounting holds
    after a restart; and counts still unsaved at shutdown are written then."""
    path = tmp_path / "b.sqlite3"

    async def scenario(then_commit: bool) -> dict[str, int]:
        buffer = await Buffer.open(path, max_events=1000, max_bytes=10**9, retention_days=90)
        writer: Writer = buffer.writer
        try:
            bad = buffer_row(1, 1)[:-1]  # a value short: the whole group fails to commit
            failed = writer.submit([bad, bad], {"received": 2, "rejected": 1}, ack=True)
            assert failed is not None
            with pytest.raises(Exception, match="buffer write failed"):
                await failed
            assert writer.unsaved == {"received": 2, "rejected": 1, "dropped.write_error": 2}
            if then_commit:
                now_ms = int(time.time() * 1000)  # not one retention purges at the next open
                ok = writer.submit([buffer_row(2, now_ms)], {"received": 1}, ack=True)
                assert ok is not None
                await ok
                assert writer.unsaved == {}
            return dict(writer.unsaved)
        finally:
            await buffer.close()

    asyncio.run(scenario(then_commit=True))
    counts = _file_counters(path)
    assert counts["received"] == 3 and counts["stored"] == 1
    assert counts["rejected"] == 1 and counts["dropped.write_error"] == 2
    asyncio.run(scenario(then_commit=False))  # nothing commits after the failure
    counts = _file_counters(path)
    assert counts["received"] == 5 and counts["stored"] == 1
    assert counts["rejected"] == 2 and counts["dropped.write_error"] == 4


def test_write_errors_on_a_full_disk_are_still_counted_after_clear_and_a_restart(
    daemon_factory: DaemonFactory, tiny_disk: Path
) -> None:
    daemon = _started_on(daemon_factory, tiny_disk)
    url = daemon.http_url()
    _fill_until_refused(url)
    lost = _send_while_full(daemon)["counters"]["dropped_by_reason"]["write_error"]
    cleared = daemon.cli("clear", "--yes")
    assert cleared.returncode == 0, cleared.stderr
    assert (
        post_events(url, [{"event": "after.clear", "properties": {"i": i}} for i in range(5)])[0]
        == 202
    )
    assert daemon.stop() == 0
    daemon.start()
    counters = daemon.status()["counters"]
    assert counters["stored"] == 5
    assert counters["dropped_by_reason"].get("write_error") == lost
    assert counters["received"] == 5 + lost + counters["rejected"]
    assert counters["received"] == counters["stored"] + counters["rejected"] + counters["dropped"]
    assert daemon.stop() == 0
