"""`export` as a user meets it: CSV opened in a spreadsheet, the file it writes, where it
writes when the disk or the folder is not there."""

from __future__ import annotations

import csv
import io
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import DaemonFactory
from tests.daemon_process import DaemonProcess
from tests.test_daemon_ingest import post_events
from tests.test_tcp_peers import OTHER_UID, as_other_user

# Names a spreadsheet would run as formulas if a cell started with them.
FORMULA_NAMES = ['=HYPERLINK("https://example.invalid","open")', "+1+2", "-3+4", "@SUM(1,2)"]


def test_csv_cells_never_start_a_spreadsheet_formula(daemon: DaemonProcess) -> None:
    """Event and agent names are what agents sent: in CSV, one that a spreadsheet would run
    as a formula is written as text (a leading `'`), and JSON keeps it unchanged."""
    url = daemon.http_url()
    post_events(url, [{"event": name} for name in FORMULA_NAMES])
    post_events(url, [{"event": "plain.name"}], headers={"X-Agent-Name": "=cmd|' /C calc'!A0"})
    rows = list(csv.DictReader(io.StringIO(daemon.cli("export", "--format", "csv").stdout)))
    assert [row["event"] for row in rows] == [*("'" + name for name in FORMULA_NAMES), "plain.name"]
    assert rows[-1]["agent"] == "'=cmd|' /C calc'!A0"
    assert all(row["properties"] == "{}" for row in rows)
    as_json = daemon.export()
    assert [row["event"] for row in as_json] == [*FORMULA_NAMES, "plain.name"]
    assert as_json[-1]["agent"] == "=cmd|' /C calc'!A0"


def test_an_export_file_is_readable_by_the_user_alone(daemon: DaemonProcess) -> None:
    """An export holds what the buffer holds: a new file is 0600 whatever the umask, and an
    existing one others could read is tightened before the events go in."""
    post_events(daemon.http_url(), [{"event": "private.data"}])
    new = daemon.home / "new.ndjson"
    existing = daemon.home / "existing.csv"
    existing.write_text("old contents\n")
    existing.chmod(0o644)
    for out, fmt in ((new, "ndjson"), (existing, "csv")):
        daemon.cli("export", "--format", fmt, "-o", str(out))
        assert stat.S_IMODE(out.stat().st_mode) == 0o600, out.name
        assert "private.data" in out.read_text()
    missing = daemon.home / "no-such-folder" / "events.json"
    result = daemon.cli("export", "-o", str(missing), check=False)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip() == f"Error: cannot write {missing}: No such file or directory"


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to make a device node")
@pytest.mark.parametrize("command", ["export", "report"])
def test_writing_to_a_device_leaves_its_mode_alone(daemon: DaemonProcess, command: str) -> None:
    """`-o /dev/null` discards the output; it must not chmod the device (as root, that
    would lock every other user out of /dev/null). A private null device stands in."""
    device = daemon.home / "null"
    os.mknod(device, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    device.chmod(0o666)
    result = daemon.cli(command, "-o", str(device))
    assert result.returncode == 0
    assert stat.S_IMODE(device.stat().st_mode) == 0o666


def test_an_export_to_a_full_disk_is_one_line_not_a_traceback(daemon: DaemonProcess) -> None:
    """`export > file` on a full disk (here /dev/full, which refuses every write) says so
    in one line and exits 1, as `-o FILE` does."""
    post_events(daemon.http_url(), [{"event": "fills.the.disk"}] * 200)
    for args in ((), ("-o", "/dev/full")):
        with open("/dev/full", "wb") as full:
            result = subprocess.run(
                [daemon.program, "export", "--format", "csv", *args],
                env=daemon.env,
                stdout=full,
                stderr=subprocess.PIPE,
                text=True,
                timeout=60,
            )
        assert result.returncode == 1, args
        assert "Traceback" not in result.stderr
        assert result.stderr.count("\n") == 1 and "No space left on device" in result.stderr


def test_an_export_the_disk_cannot_hold_leaves_no_half_file_filling_it(
    daemon: DaemonProcess, small_disk: Path
) -> None:
    """3 MB of events exported to a 2 MiB file system: the command says it failed, and the
    disk is as free as before, not full of a file nobody can use."""
    post_events(daemon.http_url(), [{"event": "big", "properties": {"note": "n" * 1000}}] * 3000)
    free_before = shutil.disk_usage(small_disk).free
    output = small_disk / "events.ndjson"
    result = daemon.cli("export", "--format", "ndjson", "-o", str(output), check=False)
    assert result.returncode == 1 and "No space left on device" in result.stderr
    assert list(small_disk.iterdir()) == []
    assert shutil.disk_usage(small_disk).free == free_before


@pytest.mark.parametrize("command", ["export", "report"])
def test_the_buffer_itself_is_never_the_output(daemon: DaemonProcess, command: str) -> None:
    """`-o` naming the buffer (here through a symlink) truncated it before a row was read:
    with the daemon down, every event, the anonymous id and the ids `forget` must reach
    were gone at its next start. Now it is one line, and the buffer is untouched."""
    post_events(daemon.http_url(), [{"event": "precious"}] * 10)
    anonymous_id = daemon.status()["anonymous_id"]
    daemon.stop()
    size = daemon.database.stat().st_size
    alias = daemon.home / "events.json"
    alias.symlink_to(daemon.database)
    for target in (daemon.database, alias, daemon.database.with_name("buffer.sqlite3-wal")):
        result = daemon.cli(command, "-o", str(target), check=False)
        assert result.returncode == 1 and "Traceback" not in result.stderr
        assert "one of the buffer's own files" in result.stderr
    assert daemon.database.stat().st_size == size
    assert not daemon.database.with_name("buffer.sqlite3-wal").exists()
    daemon.start()
    assert daemon.status()["anonymous_id"] == anonymous_id
    assert [row["event"] for row in daemon.export()] == ["precious"] * 10


# Another user's traps in a shared folder: a link to one of the user's files, and a file
# of their own they could read back.
PLANT_TRAPS = """
import os, sys
folder, target = sys.argv[1], sys.argv[2]
os.symlink(target, os.path.join(folder, "linked.out"))
with open(os.path.join(folder, "theirs.out"), "w") as out:
    out.write("theirs")
os.chmod(os.path.join(folder, "theirs.out"), 0o666)
"""


@pytest.mark.parametrize("command", ["export", "report"])
def test_writing_into_a_shared_folder_never_uses_a_name_another_user_put_there(
    daemon: DaemonProcess, shared_folder: Path, command: str
) -> None:
    """`-o /tmp/…`: a link another user made there is not followed (it would overwrite
    the user's ~/.profile with their events), nor is a file of theirs filled (they could
    read it); a new name there is written, the user's alone."""
    post_events(daemon.http_url(), [{"event": "private.data"}])
    profile = daemon.home / "profile"
    profile.write_text("the user's own file\n")
    planted = as_other_user(sys.executable, "-c", PLANT_TRAPS, str(shared_folder), str(profile))
    assert planted.returncode == 0, planted.stderr
    linked = daemon.cli(command, "-o", str(shared_folder / "linked.out"), check=False)
    assert linked.returncode == 1 and "Traceback" not in linked.stderr
    assert linked.stderr.strip() == (
        f"Error: cannot write {shared_folder / 'linked.out'}: is a symbolic link that uid "
        f"{OTHER_UID} made in a shared folder; not followed"
    )
    assert profile.read_text() == "the user's own file\n"
    theirs = daemon.cli(command, "-o", str(shared_folder / "theirs.out"), check=False)
    assert theirs.returncode == 1
    assert f"belongs to uid {OTHER_UID}, in a shared folder" in theirs.stderr
    assert (shared_folder / "theirs.out").read_text() == "theirs"
    # A second name of the user's file (what anyone can make where fs.protected_hardlinks
    # is off; made by the test here, as it is on).
    os.link(profile, shared_folder / "hardlinked.out")
    hardlinked = daemon.cli(command, "-o", str(shared_folder / "hardlinked.out"), check=False)
    assert hardlinked.returncode == 1 and "is one more name (a hard link)" in hardlinked.stderr
    assert profile.read_text() == "the user's own file\n"
    fresh = shared_folder / "fresh.out"
    daemon.cli(command, "-o", str(fresh))
    assert "private.data" in fresh.read_text()
    assert (fresh.stat().st_uid, stat.S_IMODE(fresh.stat().st_mode)) == (os.geteuid(), 0o600)


@pytest.mark.parametrize("trap", ["linked.out", "theirs.out"])
def test_the_file_sender_never_writes_into_a_name_another_user_put_in_a_shared_folder(
    daemon_factory: DaemonFactory, shared_folder: Path, trap: str
) -> None:
    """AGENT_TELEMETRY_FILE=/tmp/…: a flush neither appends the events to a file another
    user made there first (they would read every event) nor follows their link."""
    profile = shared_folder.parent / f"{shared_folder.name}-profile"
    profile.write_text("the user's own file\n")
    try:
        planted = as_other_user(sys.executable, "-c", PLANT_TRAPS, str(shared_folder), str(profile))
        assert planted.returncode == 0, planted.stderr
        daemon = daemon_factory(
            {
                "AGENT_TELEMETRY_MODE": "upload",
                "AGENT_TELEMETRY_SENDER": "file",
                "AGENT_TELEMETRY_FILE": str(shared_folder / trap),
                "AGENT_TELEMETRY_RATE_LIMIT": "off",
            }
        )
        post_events(daemon.http_url(), [{"event": "private.data"}])
        flushed = daemon.cli("flush", check=False)
        assert flushed.returncode != 0
        assert f"uid {OTHER_UID}" in flushed.stdout + flushed.stderr
        assert daemon.status()["buffer"]["pending_upload"] == 1
        assert (shared_folder / "theirs.out").read_text() == "theirs"
        assert profile.read_text() == "the user's own file\n"
    finally:
        profile.unlink()
