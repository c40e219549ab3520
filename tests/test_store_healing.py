"""A buffer that heals: a foreign WAL, a corrupt page, a full disk — the real daemon.

Each fault is made the way it happens to users (a WAL file from another database left
beside the buffer, garbage over a page, a disk filled to the last byte) and the test looks
at what the user sees: events intact or the file kept aside with a log line naming it,
new events taken, `clear` and `forget` working, all without a restart.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sqlite3
import subprocess
import time
from pathlib import Path
from typing import Any

from agent_telemetryd.store.buffer import Buffer
from agent_telemetryd.store.database import open_buffer
from agent_telemetryd.store.rows import INSERT_EVENT
from tests.conftest import DaemonFactory, mounted_tmpfs
from tests.daemon_process import DaemonProcess
from tests.fakes.upload_helpers import post_events
from tests.test_daemon_ingest import post_events as post_raw
from tests.test_store_failures import buffer_row

PAGE = 4096
QUIET_ENV = {"AGENT_TELEMETRY_RATE_LIMIT": "off"}


def foreign_wal(directory: Path) -> Path:
    """A real WAL of another database, with committed transactions never checkpointed:
    the process that wrote it was killed, as happens to any SQLite user."""
    other = directory / "other.sqlite3"
    script = f"""
import os, signal, sqlite3
c = sqlite3.connect({str(other)!r}, isolation_level=None)
c.execute("PRAGMA journal_mode=WAL")
c.execute("PRAGMA wal_autocheckpoint=0")
c.execute("CREATE TABLE IF NOT EXISTS notes (x TEXT)")
for i in range(200):
    c.execute("INSERT INTO notes VALUES (?)", ("note %d" % i,))
os.kill(os.getpid(), signal.SIGKILL)
"""
    subprocess.run(["python3", "-c", script], check=False)
    wal = Path(f"{other}-wal")
    assert wal.stat().st_size > 8 * PAGE
    return wal


def kept_files(daemon: DaemonProcess, label: str) -> list[Path]:
    """The buffer files kept aside under `label` (not their -wal and -shm)."""
    found = daemon.database.parent.glob(f"buffer.sqlite3.{label}-*")
    return [path for path in found if not path.name.endswith(("-wal", "-shm"))]


def fill_to_the_last_byte(disk: Path) -> None:
    """Whatever room is left, a file takes (if a file can still be made at all)."""
    try:
        fd = os.open(disk / "filler", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    except OSError:
        return
    try:
        for size in (65536, 4096, 512, 1):
            while True:
                try:
                    os.write(fd, b"\0" * size)
                except OSError:
                    break
    finally:
        os.close(fd)


def wait_for_log(daemon: DaemonProcess, text: str, timeout: float = 20.0) -> str:
    deadline = time.monotonic() + timeout
    while text not in daemon.log():
        assert time.monotonic() < deadline, f"{text!r} never logged:\n{daemon.log()}"
        time.sleep(0.05)
    return daemon.log()


def test_a_foreign_wal_before_start_is_moved_aside_and_the_buffer_kept(
    daemon_factory: DaemonFactory, tmp_path: Path
) -> None:
    daemon = daemon_factory({"AGENT_TELEMETRY_RATE_LIMIT": "off"})
    uuids = set(post_events(daemon, 1000))
    assert daemon.stop() == 0
    wal = Path(f"{daemon.database}-wal")
    shutil.copyfile(foreign_wal(tmp_path), wal)
    daemon.start()
    assert {row["uuid"] for row in daemon.export()} == uuids
    log = wait_for_log(daemon, "buffer_wal_not_ours_moved_aside")
    kept = list(daemon.database.parent.glob("buffer.sqlite3.foreign-*-wal"))
    assert len(kept) == 1 and str(kept[0]) in log
    assert kept[0].read_bytes() == (tmp_path / "other.sqlite3-wal").read_bytes()
    post_events(daemon, 10)
    assert daemon.status()["buffer"]["events"] == 1010


def test_the_buffers_own_wal_after_kill_9_is_replayed_not_moved(
    daemon_factory: DaemonFactory,
) -> None:
    daemon = daemon_factory({"AGENT_TELEMETRY_RATE_LIMIT": "off"})
    uuids = set(post_events(daemon, 1000))
    daemon.kill()
    assert Path(f"{daemon.database}-wal").stat().st_size > 0
    daemon.start()
    assert {row["uuid"] for row in daemon.export()} == uuids
    assert "buffer_wal_not_ours_moved_aside" not in daemon.log()


def test_the_buffers_own_wal_is_kept_after_kill_9_while_its_salts_could_not_be_recorded(
    daemon_factory: DaemonFactory,
) -> None:
    """The record's temporary file made a folder: the record cannot be written, as on a
    full disk. On a small file system the WAL would rewind every few commits; every event
    acknowledged meanwhile is still there after a kill -9 and a start."""
    # 4 MiB: the WAL is checkpointed past 256 KiB, and room is left for it to grow while
    # it may not rewind.
    with mounted_tmpfs("4m") as disk:
        daemon = daemon_factory({"AGENT_TELEMETRY_RATE_LIMIT": "off"}, start=False)
        (daemon.home / "data").symlink_to(disk)
        daemon.start()
        blocker = Path(f"{daemon.database}.wal-salts.tmp")
        blocker.mkdir()
        uuids: set[str] = set()
        for _ in range(100):  # far more than 16 rewinds, unless they are held back
            uuids.update(post_events(daemon, 5))
        assert "wal_salts_not_recorded" in daemon.log()
        daemon.kill()
        blocker.rmdir()
        daemon.start()
        assert {row["uuid"] for row in daemon.export()} == uuids
        assert "buffer_wal_not_ours_moved_aside" not in daemon.log()
        assert daemon.stop() == 0


def _corrupt_page(database: Path, page_number: int) -> None:
    with database.open("r+b") as file:
        file.seek((page_number - 1) * PAGE)
        file.write(os.urandom(PAGE))


def test_garbage_over_a_page_mid_file_is_found_at_start_and_moved_aside(
    daemon_factory: DaemonFactory,
) -> None:
    daemon = daemon_factory({"AGENT_TELEMETRY_RATE_LIMIT": "off"})
    post_events(daemon, 2000)
    anonymous_id = daemon.status()["anonymous_id"]
    assert daemon.stop() == 0  # a clean stop: every page is in the file, no WAL
    pages = daemon.database.stat().st_size // PAGE
    _corrupt_page(daemon.database, pages // 2)
    damaged = daemon.database.read_bytes()
    daemon.start()
    log = wait_for_log(daemon, "buffer_corrupt_moved_aside")
    kept = kept_files(daemon, "corrupt")
    assert len(kept) == 1 and str(kept[0]) in log
    assert kept[0].read_bytes() == damaged  # kept as it was found, for the user
    uuids = set(post_events(daemon, 20))
    assert {row["uuid"] for row in daemon.export()} == uuids
    # The id lives on a page the damage did not reach: the fresh buffer keeps it.
    assert daemon.status()["anonymous_id"] == anonymous_id
    assert "Traceback" not in daemon.log()
    # The copy kept aside holds events too: `clear`, "every stored event gone", takes it.
    daemon.cli("clear", "--yes")
    assert kept_files(daemon, "corrupt") == []
    assert daemon.export() == []


def test_a_large_buffer_is_checked_after_start_and_healed_while_running(
    daemon_factory: DaemonFactory,
) -> None:
    """Above 16 MiB the check runs behind a daemon that already takes events."""
    from agent_telemetryd.store.buffer import INLINE_CHECK_BYTES
    from bench.fixtures import fill_buffer

    daemon = daemon_factory(QUIET_ENV)
    daemon.stop()
    fill_buffer(daemon.database, 70_000, upload="local")
    assert daemon.database.stat().st_size > INLINE_CHECK_BYTES
    _corrupt_page(daemon.database, daemon.database.stat().st_size // PAGE // 2)
    daemon.start()  # ready before the check is done: it does not hold the start up
    log = wait_for_log(daemon, "buffer_corrupt_moved_aside", timeout=60)
    kept = kept_files(daemon, "corrupt")
    assert len(kept) == 1 and str(kept[0]) in log
    uuids = set(post_events(daemon, 10))
    assert {row["uuid"] for row in daemon.export()} == uuids


def _root_page(database: Path, table: str) -> int:
    conn = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
    try:
        return int(
            conn.execute("SELECT rootpage FROM sqlite_master WHERE name = ?", (table,)).fetchone()[
                0
            ]
        )
    finally:
        conn.close()


def test_corruption_met_while_running_heals_without_a_restart_and_keeps_the_events_queued(
    daemon_factory: DaemonFactory,
) -> None:
    daemon = daemon_factory({"AGENT_TELEMETRY_RATE_LIMIT": "off"})
    post_events(daemon, 1000)
    daemon.stop()
    daemon.start()
    pid = daemon.proc.pid if daemon.proc else None
    # Under the running daemon: the next insert has to read this page.
    _corrupt_page(daemon.database, _root_page(daemon.database, "events_uuid"))
    status, body = post_raw(
        daemon.http_url(), [{"event": "after.damage", "properties": {"i": i}} for i in range(50)]
    )
    assert status == 202 and body["accepted"] == 50
    log = wait_for_log(daemon, "buffer_corrupt_moved_aside")
    assert daemon.proc is not None and daemon.proc.pid == pid and daemon.proc.poll() is None
    assert [row["event"] for row in daemon.export()] == ["after.damage"] * 50
    kept = kept_files(daemon, "corrupt")
    assert len(kept) == 1 and str(kept[0]) in log
    # The counters carried over, the events kept aside counted: the accounting holds.
    counters = daemon.status()["counters"]
    assert counters["received"] == 1050 and counters["stored"] == 50
    assert counters["dropped_by_reason"].get("corrupt_moved_aside") == 1000
    assert counters["received"] == counters["stored"] + counters["rejected"] + counters["dropped"]


def _fill(url: str) -> int:
    """POST until the disk refuses; returns how many events went in."""
    padding = "x" * 2000
    stored = 0
    for batch in range(200):
        events = [
            {"event": "fill", "properties": {"b": batch, "i": i, "p": padding}} for i in range(20)
        ]
        status, body = post_raw(url, events)
        if status == 503:
            return stored
        assert status == 202, body
        stored += body["accepted"]
    raise AssertionError("the disk never filled")


def test_clear_and_forget_work_on_a_disk_full_to_the_last_byte(
    daemon_factory: DaemonFactory, small_disk: Path
) -> None:
    daemon = daemon_factory(start=False)
    (daemon.home / "data").symlink_to(small_disk)
    daemon.start()
    url = daemon.http_url()
    stored = _fill(url)
    fill_to_the_last_byte(small_disk)
    assert os.statvfs(small_disk).f_bavail == 0
    # The disk holds the buffer's pages, not a WAL crowding them out.
    assert daemon.database.stat().st_size > (2 * 1024 * 1024) // 2

    cleared = daemon.cli("clear", "--yes")
    assert cleared.stdout.splitlines() == [f"Deleted {stored} events."]
    status, body = post_raw(url, [{"event": "after.clear"}])
    assert (status, body["accepted"]) == (202, 1)

    (small_disk / "filler").unlink(missing_ok=True)
    _fill(url)
    fill_to_the_last_byte(small_disk)
    forgot = daemon.cli("forget", "--yes", "--json")
    assert json.loads(forgot.stdout)["deleted"] > 0
    status, body = post_raw(url, [{"event": "after.forget"}])
    assert (status, body["accepted"]) == (202, 1)
    assert [row["event"] for row in daemon.export()] == ["after.forget"]
    assert daemon.proc is not None and daemon.proc.poll() is None
    assert "Traceback" not in daemon.log()


def test_a_buffer_that_cannot_be_opened_is_named_with_the_reason(
    daemon_factory: DaemonFactory,
) -> None:
    mount_point = Path(f"/tmp/at-ro-{os.getpid()}-{time.monotonic_ns()}")
    mount_point.mkdir()
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "ro,size=1m,mode=0700", "tmpfs", str(mount_point)],
        check=True,
    )
    try:
        daemon = daemon_factory(start=False)
        (daemon.home / "data").symlink_to(mount_point)
        daemon.start(wait=False)
        assert daemon.proc is not None and daemon.proc.wait(15) == 3
        expected = f"cannot open the buffer at {daemon.database}: read-only file system"
        assert expected in daemon.log()
        assert "Traceback" not in daemon.log()
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)
        mount_point.rmdir()


def test_retention_frees_space_on_a_disk_full_to_the_last_byte(small_disk: Path) -> None:
    """Old events fill the disk; reopened with a retention that makes them expired, the
    buffer opens on the full disk, retention deletes them, and new events go in."""
    import asyncio

    from agent_telemetryd.store.buffer import Buffer
    from agent_telemetryd.store.writer import StoreFullError

    path = small_disk / "buffer.sqlite3"
    now_ms = int(time.time() * 1000)
    padding = json.dumps({"p": "x" * 1500})

    def rows(first: int, count: int, received_ms: int) -> list[tuple[Any, ...]]:
        return [
            (f"00000000-0000-7000-8000-{first + i:012d}", "e", received_ms, received_ms, padding,
             "a", None, "http", "local", "local", "id", "t", None, None, None, None)
            for i in range(count)
        ]  # fmt: skip

    async def fill() -> int:
        # Kept for a century: nothing expires while the disk fills.
        buffer = await Buffer.open(path, max_events=10**9, max_bytes=10**12, retention_days=36500)
        written = 0
        try:
            while True:
                ack = buffer.writer.submit(rows(written, 20, now_ms - 100 * 86_400_000), ack=True)  # type: ignore[arg-type]
                assert ack is not None
                try:
                    await ack
                except StoreFullError:
                    return written
                written += 20
        finally:
            await buffer.close()

    async def purge() -> tuple[int, int]:
        buffer = await Buffer.open(path, max_events=10**9, max_bytes=10**12, retention_days=90)
        try:
            await buffer.purge_expired()  # the one run at open may be the one that did it
            left = await buffer.read(
                lambda c: c.execute("SELECT count(*) FROM events").fetchone()[0]
            )
            ack = buffer.writer.submit(rows(10**6, 5, now_ms), ack=True)  # type: ignore[arg-type]
            assert ack is not None
            return left, (await ack).inserted
        finally:
            await buffer.close()

    assert asyncio.run(fill()) > 100
    fill_to_the_last_byte(small_disk)
    assert os.statvfs(small_disk).f_bavail == 0
    assert asyncio.run(purge()) == (0, 5)


def test_a_corrupt_buffer_found_at_open_keeps_its_counters(tmp_path: Path) -> None:
    """The events of the file kept aside are counted as dropped, the other counts kept."""
    path = tmp_path / "buffer.sqlite3"
    conn = open_buffer(path)
    now_ms = int(time.time() * 1000)
    conn.execute("BEGIN")
    conn.executemany(INSERT_EVENT, [tuple(buffer_row(n, now_ms)) for n in range(3000)])
    for name, value in (("received", 3010), ("stored", 3000), ("rejected", 4)):
        conn.execute("INSERT INTO counters (name, value) VALUES (?, ?)", (name, value))
    conn.execute("INSERT INTO counters (name, value) VALUES ('dropped.duplicate', 6)")
    conn.execute("COMMIT")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    _corrupt_page(path, _root_page(path, "events_uuid"))

    async def reopen() -> dict[str, int]:
        buffer = await Buffer.open(path, max_events=10**6, max_bytes=10**9, retention_days=90)
        try:
            return await buffer.read(
                lambda c: {n: v for n, v in c.execute("SELECT name, value FROM counters")}
            )
        finally:
            await buffer.close()

    counts = asyncio.run(reopen())
    assert list(tmp_path.glob("buffer.sqlite3.corrupt-*")), "the file was not moved aside"
    assert counts == {
        "received": 3010,
        "rejected": 4,
        "dropped.duplicate": 6,
        "dropped.corrupt_moved_aside": 3000,
    }
