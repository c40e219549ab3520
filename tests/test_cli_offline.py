"""The command line with the daemon down, where the buffer is in trouble: a disk full to the
last byte, a write-ahead log that is not the buffer's, a damaged file.

`clear`, `forget` and `mode off` then write the buffer themselves, and must work exactly
when a user reaches for them: on a full disk. The views (`status`, `export`, `doctor`)
read it themselves, and must neither show what a foreign WAL holds nor fail with a
traceback. Real files on a real tmpfs, the real CLI as a subprocess, a loopback backend.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from tests.conftest import DaemonFactory
from tests.daemon_process import DaemonProcess
from tests.fakes.http_backend import FakeHttpBackend
from tests.fakes.upload_helpers import flush_json, post_events
from tests.test_doctor import closed_port
from tests.test_store_healing import (
    _fill,
    fill_to_the_last_byte,
    foreign_wal,
)

QUIET_ENV = {"AGENT_TELEMETRY_RATE_LIMIT": "off"}


def files_beside(database: Path) -> dict[str, bytes | None]:
    """Every file in the buffer's folder, by name, with its bytes; a `-shm` by name alone
    (SQLite's shared index of a WAL: any reader may bring it up to date)."""
    return {
        str(path.relative_to(database.parent)): None
        if path.name.endswith("-shm")
        else path.read_bytes()
        for path in sorted(database.parent.rglob("*"))
        if path.is_file()
    }


def exported_uuids(result_stdout: str) -> list[str]:
    return [json.loads(line)["uuid"] for line in result_stdout.split("\n") if line.strip()]


def doctor_checks(daemon: DaemonProcess) -> dict[str, Any]:
    result = daemon.cli("doctor", "--json", check=False)
    return {check["name"]: check for check in json.loads(result.stdout)["checks"]}


def full_disk_with_the_daemon_down(daemon: DaemonProcess, disk: Path) -> int:
    """Fill the buffer's disk through the daemon, stop it, then take the last byte too;
    returns how many events the buffer holds."""
    (daemon.home / "data").symlink_to(disk, target_is_directory=True)
    daemon.start()
    stored = _fill(daemon.http_url())
    assert daemon.stop() == 0
    fill_to_the_last_byte(disk)
    assert os.statvfs(disk).f_bavail == 0
    return stored


def offline_status(daemon: DaemonProcess) -> dict[str, object]:
    status = daemon.status()
    assert status["running"] is False
    return status


def test_clear_with_the_daemon_down_works_on_a_disk_full_to_the_last_byte(
    daemon_factory: DaemonFactory, small_disk: Path
) -> None:
    daemon = daemon_factory(QUIET_ENV, start=False)
    stored = full_disk_with_the_daemon_down(daemon, small_disk)
    before = files_beside(daemon.database)

    # First the user looks: the views work on the full disk and leave every file as it was
    # (no -wal or -shm made beside the buffer: there is no room for one).
    status = offline_status(daemon)
    anonymous_id = status["anonymous_id"]
    assert status["buffer"]["events"] == stored  # type: ignore[index]
    exported = daemon.cli("export", "--format", "ndjson")
    assert len(exported_uuids(exported.stdout)) == stored and exported.stderr == ""
    assert files_beside(daemon.database) == before

    cleared = daemon.cli("clear", "--yes")
    assert cleared.stdout.splitlines() == [f"Deleted {stored} events."]
    assert cleared.stderr == ""
    status = offline_status(daemon)
    assert status["buffer"]["events"] == 0  # type: ignore[index]
    assert status["anonymous_id"] == anonymous_id  # kept, as the daemon's clear keeps it
    # A fresh file in place of the old one: its space is back on the disk.
    assert daemon.database.stat().st_size < 256 * 1024
    assert os.statvfs(small_disk).f_bavail > 0


def test_forget_with_the_daemon_down_works_on_a_full_disk_and_keeps_ids_until_erased(
    daemon_factory: DaemonFactory, small_disk: Path
) -> None:
    backend = FakeHttpBackend().start()
    try:
        daemon = daemon_factory(
            {
                **QUIET_ENV,
                "AGENT_TELEMETRY_MODE": "upload",
                "AGENT_TELEMETRY_SENDER": "http",
                "TELEMETRY_ENDPOINT": backend.url,
                "TELEMETRY_API_KEY": backend.api_key,
            },
            start=False,
        )
        (daemon.home / "data").symlink_to(small_disk, target_is_directory=True)
        daemon.start()
        post_events(daemon, 3)
        assert flush_json(daemon)["events_sent"] == 3
        sent_id = daemon.status()["anonymous_id"]
        stored = 3 + _fill(daemon.http_url())
        assert daemon.stop() == 0
        fill_to_the_last_byte(small_disk)
        assert os.statvfs(small_disk).f_bavail == 0

        # The backend does not confirm (it refuses the key): the buffer is emptied all the
        # same, a new id made, and the id the backend holds data under is kept for later.
        daemon.env["TELEMETRY_API_KEY"] = "not-the-key"
        first = daemon.cli("forget", "--yes", "--json", check=False)
        assert first.returncode == 1 and first.stderr == ""
        out = json.loads(first.stdout)
        assert out["deleted"] == stored and out["erased_ids"] == [sent_id]
        assert out["erasure"]["requested"] is True and out["erasure"]["ok"] is False
        status = offline_status(daemon)
        assert status["buffer"]["events"] == 0  # type: ignore[index]
        assert status["anonymous_id"] == out["anonymous_id"] != sent_id

        # Full again, to the last byte; the backend answers now and receives the erasure.
        fill_to_the_last_byte(small_disk)
        assert os.statvfs(small_disk).f_bavail == 0
        daemon.env["TELEMETRY_API_KEY"] = backend.api_key
        second = daemon.cli("forget", "--yes")
        new_id = offline_status(daemon)["anonymous_id"]
        assert second.stdout.splitlines() == [
            "Deleted 0 events.",
            f"New anonymous id: {new_id}",
            f"Remote data at http {backend.url}: the backend erased the data of 1 id(s).",
        ]
        assert second.stderr == ""
        assert backend.deleted_ids == [sent_id] and backend.stored == {}
        assert new_id not in (sent_id, out["anonymous_id"])
        # Confirmed: nothing is left to ask for.
        again = json.loads(daemon.cli("forget", "--yes", "--json").stdout)
        assert again["erased_ids"] == [] and again["erasure"]["requested"] is False
    finally:
        backend.stop()


def test_mode_off_with_the_daemon_down_on_a_full_disk_makes_every_pending_event_local(
    daemon_factory: DaemonFactory, small_disk: Path
) -> None:
    """The consent file on the full disk too (as on macOS, where it sits beside the buffer):
    the choice is recorded and every pending event becomes local-only, for good."""
    daemon = daemon_factory(
        {
            **QUIET_ENV,
            "AGENT_TELEMETRY_CONFIG": str(small_disk / "config.toml"),
            "AGENT_TELEMETRY_SENDER": "http",
            # Nothing answers there: what is received stays pending.
            "TELEMETRY_ENDPOINT": f"http://127.0.0.1:{closed_port()}",
        },
        start=False,
    )
    (daemon.home / "data").symlink_to(small_disk, target_is_directory=True)
    daemon.start()
    daemon.cli("enable")
    stored = _fill(daemon.http_url())
    assert daemon.status()["buffer"]["pending_upload"] == stored
    assert daemon.stop() == 0
    fill_to_the_last_byte(small_disk)
    assert os.statvfs(small_disk).f_bavail == 0

    result = daemon.cli("mode", "off")
    assert result.stdout.splitlines()[0] == "Mode: off" and result.stderr == ""
    status = offline_status(daemon)
    assert (status["mode"], status["mode_source"]) == ("off", "command")
    buffer = status["buffer"]
    assert buffer["pending_upload"] == 0 and buffer["local_only"] == stored  # type: ignore[index]


def test_views_with_the_daemon_down_never_read_a_foreign_wal_and_change_nothing(
    daemon_factory: DaemonFactory, tmp_path: Path
) -> None:
    daemon = daemon_factory(QUIET_ENV)
    uuids = set(post_events(daemon, 300))
    assert daemon.stop() == 0
    wal = Path(f"{daemon.database}-wal")
    shutil.copyfile(foreign_wal(tmp_path), wal)
    before = files_beside(daemon.database)
    warning = f"Warning: {wal} is not this buffer's write-ahead log"

    exported = daemon.cli("export", "--format", "ndjson")
    assert set(exported_uuids(exported.stdout)) == uuids
    assert exported.stderr.count(warning) == 1 and "Traceback" not in exported.stderr
    status = daemon.cli("status", "--json")
    assert json.loads(status.stdout)["buffer"]["events"] == 300
    assert status.stderr.count(warning) == 1
    report = daemon.cli("report", "-o", str(tmp_path / "report.html"))
    assert "(300 events;" in report.stdout and report.stderr.count(warning) == 1
    buffer_check = doctor_checks(daemon)["buffer"]
    assert buffer_check["verdict"] == "warn" and "is not its own" in buffer_check["detail"]
    assert "start the daemon" in buffer_check["fix"]
    # Nothing of it applied, moved or made: the daemon still finds the pair as it was.
    assert files_beside(daemon.database) == before

    daemon.start()
    assert {row["uuid"] for row in daemon.export()} == uuids
    assert "buffer_wal_not_ours_moved_aside" in daemon.log()


def test_a_change_with_the_daemon_down_moves_a_foreign_wal_aside_and_says_so_on_stderr(
    daemon_factory: DaemonFactory, tmp_path: Path
) -> None:
    """A command that changes the file opens it as the daemon does: a WAL that is not the
    buffer's is moved aside first, and the user reads that in one line on stderr, apart
    from the command's own output."""
    daemon = daemon_factory(QUIET_ENV)
    uuids = set(post_events(daemon, 50))
    assert daemon.stop() == 0
    shutil.copyfile(foreign_wal(tmp_path), Path(f"{daemon.database}-wal"))

    changed = daemon.cli("mode", "off")
    assert changed.stdout.splitlines()[0] == "Mode: off"
    (line,) = changed.stderr.splitlines()
    assert line.startswith("[error] buffer_wal_not_ours_moved_aside ")
    assert "the buffer opens without it" in line
    assert [path.name for path in daemon.database.parent.glob("*.foreign-*-wal")]
    assert offline_status(daemon)["mode"] == "off"
    assert set(exported_uuids(daemon.cli("export", "--format", "ndjson").stdout)) == uuids


def test_views_with_the_daemon_killed_read_its_own_wal_and_change_nothing(
    daemon_factory: DaemonFactory,
) -> None:
    """Committed events still in the WAL of a daemon killed before its checkpoint."""
    daemon = daemon_factory(QUIET_ENV)
    uuids = set(post_events(daemon, 300))
    daemon.kill()
    assert Path(f"{daemon.database}-wal").stat().st_size > 0
    before = files_beside(daemon.database)

    exported = daemon.cli("export", "--format", "ndjson")
    assert set(exported_uuids(exported.stdout)) == uuids and exported.stderr == ""
    assert offline_status(daemon)["buffer"]["events"] == 300  # type: ignore[index]
    assert doctor_checks(daemon)["buffer"]["verdict"] == "ok"
    assert files_beside(daemon.database) == before


def test_views_with_the_daemon_stopped_work_on_a_full_disk_and_make_no_file(
    daemon_factory: DaemonFactory, small_disk: Path
) -> None:
    """A clean stop leaves the buffer without a WAL; reading it must not make one (nor its
    32 KiB index), which a disk full to the last byte has no room for."""
    daemon = daemon_factory(QUIET_ENV, start=False)
    (daemon.home / "data").symlink_to(small_disk, target_is_directory=True)
    daemon.start()
    uuids = set(post_events(daemon, 200))
    assert daemon.stop() == 0
    assert not Path(f"{daemon.database}-wal").exists()
    fill_to_the_last_byte(small_disk)
    assert os.statvfs(small_disk).f_bavail == 0
    before = files_beside(daemon.database)

    exported = daemon.cli("export", "--format", "ndjson")
    assert set(exported_uuids(exported.stdout)) == uuids and exported.stderr == ""
    assert offline_status(daemon)["buffer"]["events"] == 200  # type: ignore[index]
    assert doctor_checks(daemon)["buffer"]["verdict"] == "ok"
    assert files_beside(daemon.database) == before


def test_clear_with_no_room_to_be_had_says_so_in_one_line_and_keeps_the_buffer(
    daemon_factory: DaemonFactory, small_disk: Path
) -> None:
    """The reserve gone too (taken by something else since): nothing of the buffer's can
    give room, and the user is told what to do; no traceback, nothing lost."""
    daemon = daemon_factory(QUIET_ENV, start=False)
    stored = full_disk_with_the_daemon_down(daemon, small_disk)
    (daemon.database.parent / "buffer.reserve").unlink()
    fill_to_the_last_byte(small_disk)
    assert os.statvfs(small_disk).f_bavail == 0

    cleared = daemon.cli("clear", "--yes", check=False)
    assert cleared.returncode == 1 and cleared.stdout == ""
    assert cleared.stderr.splitlines() == [
        f"Error: cannot change the buffer at {daemon.database}: no space left on device; "
        "free some space on that disk, then run the command again"
    ]
    assert offline_status(daemon)["buffer"]["events"] == stored  # type: ignore[index]
