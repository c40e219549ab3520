"""One writer per buffer, whatever runtime folder each start resolves, and a lock that is
taken and given back on a disk full to the last byte.

The runtime folder (sockets) and the data folder (the buffer) are chosen apart: two starts
with the same data folder may resolve different runtime folders (another
`XDG_RUNTIME_DIR`, or a runtime folder that stopped being private and was passed over). The
buffer's own lock, beside it, is what makes the second start, or a command that writes the
buffer with "the daemon down", meet the first.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent_telemetryd.lock import DaemonLock, running_pid
from tests.conftest import DaemonFactory, mounted_tmpfs
from tests.daemon_process import DaemonProcess, clean_environment, make_home
from tests.test_daemon_ingest import post_events
from tests.test_store_healing import _fill, fill_to_the_last_byte

QUIET_ENV = {"AGENT_TELEMETRY_RATE_LIMIT": "off"}


def cli_status(daemon: DaemonProcess) -> dict[str, object]:
    """`status --json`; a daemon that holds its lock but does not answer yet (it is
    starting) exits 1 and is told as not running."""
    result = daemon.cli("status", "--json", check=False)
    status = json.loads(result.stdout)
    return {**status, "running": False} if status.get("unanswered") else status


def wait_running(daemon: DaemonProcess, timeout: float = 20.0) -> dict[str, object]:
    """Until `status` (as the daemon's own environment resolves it) says it runs."""
    deadline = time.monotonic() + timeout
    while True:
        assert daemon.proc is not None and daemon.proc.poll() is None, daemon.log()
        status = cli_status(daemon)
        if status["running"]:
            return status
        assert time.monotonic() < deadline, daemon.log()
        time.sleep(0.1)


def refused(second: DaemonProcess) -> str:
    """A start's log, once it has exited non-zero (as it must)."""
    second.start(wait=False)
    assert second.proc is not None
    try:
        code = second.proc.wait(15)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"the daemon runs:\n{second.log()}") from None
    assert code != 0
    return second.log()


@pytest.fixture
def xdg_home() -> Iterator[Path]:
    home = make_home()
    yield home
    shutil.rmtree(home, ignore_errors=True)


def xdg_daemon(home: Path, runtime: str) -> DaemonProcess:
    """A daemon found through the XDG folders: one data and config folder, its own
    runtime folder."""
    env = clean_environment(home, QUIET_ENV)
    del env["AGENT_TELEMETRY_HOME"]
    run = home / runtime
    run.mkdir(mode=0o700, exist_ok=True)
    env.update(
        XDG_DATA_HOME=str(home / "xdg-data"),
        XDG_CONFIG_HOME=str(home / "xdg-config"),
        XDG_RUNTIME_DIR=str(run),
    )
    daemon = DaemonProcess(home, env)
    daemon.log_path = home / f"{runtime}.log"
    return daemon


def test_a_second_daemon_with_another_runtime_folder_refuses_the_same_buffer(
    xdg_home: Path,
) -> None:
    first, second = xdg_daemon(xdg_home, "run-a"), xdg_daemon(xdg_home, "run-b")
    try:
        first.start(wait=False)
        url = str(wait_running(first)["paths"]["http"])  # type: ignore[index]
        post_events(url, [{"event": "kept"}] * 3)
        assert first.proc is not None
        assert f"already running (pid {first.proc.pid})" in refused(second)
        assert "Traceback" not in second.log()
        # The first one is untouched, and still the only writer of the buffer.
        post_events(url, [{"event": "kept"}] * 2)
        deadline = time.monotonic() + 10
        while cli_status(first)["buffer"]["events"] != 5:  # type: ignore[index]
            assert time.monotonic() < deadline
            time.sleep(0.1)
    finally:
        first.kill()
        second.kill()


def test_a_runtime_folder_passed_over_still_meets_the_running_daemon(
    daemon_factory: DaemonFactory,
) -> None:
    daemon = daemon_factory(QUIET_ENV)
    post_events(daemon.http_url(), [{"event": "kept"}] * 4)
    # No longer private: every later start and command passes it over for data/run.
    os.chmod(daemon.home / "run", 0o755)
    assert daemon.proc is not None
    running = f"already running (pid {daemon.proc.pid})"

    second = daemon_factory(QUIET_ENV, start=False, home=daemon.home)
    second.log_path = daemon.home / "second.log"
    assert running in refused(second)

    # With no daemon in its runtime folder, `clear` would write the buffer itself: the
    # running daemon holds it, so it refuses, in one line, and nothing is lost.
    cleared = daemon.cli("clear", "--yes", check=False)
    assert cleared.returncode == 1
    assert running in cleared.stderr and "Traceback" not in cleared.stderr
    os.chmod(daemon.home / "run", 0o700)
    assert daemon.status()["buffer"]["events"] == 4


def test_doctor_names_the_daemon_that_holds_the_buffer_from_another_runtime_folder(
    daemon_factory: DaemonFactory,
) -> None:
    daemon = daemon_factory(QUIET_ENV)
    post_events(daemon.http_url(), [{"event": "kept"}] * 3)
    os.chmod(daemon.home / "run", 0o755)  # passed over: later commands resolve data/run
    assert daemon.proc is not None
    try:
        result = daemon.cli("doctor", "--json", check=False)
    finally:
        os.chmod(daemon.home / "run", 0o700)
    found = {check["name"]: check for check in json.loads(result.stdout)["checks"]}
    # Not "not running, start it": a start would be refused. Who holds it, and the way out.
    check = found["daemon"]
    assert check["verdict"] == "fail"
    assert f"pid {daemon.proc.pid} holds the buffer" in check["detail"]
    assert str(daemon.home / "data" / "run") in check["detail"]
    assert check["fix"].startswith(f"kill {daemon.proc.pid}; then start it")
    # The buffer is read as a running daemon's, beside its writer: all three events.
    assert found["buffer"]["verdict"] == "ok", found["buffer"]
    assert result.returncode != 0


def test_the_lock_is_taken_again_and_again_on_a_disk_full_to_the_last_byte() -> None:
    with mounted_tmpfs("1m") as disk:
        path = disk / "buffer.lock"
        lock = DaemonLock(path)
        lock.acquire()
        lock.release()
        fill_to_the_last_byte(disk)
        assert os.statvfs(disk).f_bavail == 0
        for _ in range(3):
            lock.acquire()
            assert running_pid(path) == os.getpid()
            lock.release()
            assert running_pid(path) is None


def test_the_lock_is_held_when_its_pid_finds_no_room() -> None:
    with mounted_tmpfs("1m") as disk:
        fill_to_the_last_byte(disk)
        path = disk / "buffer.lock"
        lock = DaemonLock(path)
        lock.acquire()  # a new, empty file: no block for the pid
        try:
            other = DaemonLock(path)
            with pytest.raises(RuntimeError, match=r"already running$"):
                other.acquire()
        finally:
            lock.release()


def test_after_a_clean_stop_on_a_full_disk_the_daemon_starts_again_and_clear_works(
    daemon_factory: DaemonFactory, small_disk: Path
) -> None:
    # Everything on the small disk: the buffer, and beside it every lock file.
    daemon = daemon_factory(QUIET_ENV, home=small_disk)
    try:
        stored = _fill(daemon.http_url())
        assert daemon.stop() == 0
        fill_to_the_last_byte(small_disk)
        assert os.statvfs(small_disk).f_bavail == 0

        daemon.start()
        assert daemon.status()["buffer"]["events"] == stored
        assert daemon.stop() == 0

        cleared = daemon.cli("clear", "--yes", check=False)
        assert (cleared.returncode, cleared.stderr) == (0, "")
        assert cleared.stdout.splitlines() == [f"Deleted {stored} events."]
    finally:
        daemon.kill()


def test_a_buffer_with_no_room_for_its_shared_index_is_named_a_full_disk(
    daemon_factory: DaemonFactory, small_disk: Path
) -> None:
    daemon = daemon_factory(QUIET_ENV, start=False)
    (daemon.home / "data").symlink_to(small_disk, target_is_directory=True)
    daemon.start()
    post_events(daemon.http_url(), [{"event": "kept"}] * 5)
    assert daemon.stop() == 0
    assert not list(small_disk.glob("*-shm"))  # a clean stop with room leaves none
    fill_to_the_last_byte(small_disk)

    # SQLite says "disk I/O error" when it cannot make its -shm: the start fails in one
    # line that says what the user can act on.
    log = refused(daemon)
    assert daemon.proc is not None and daemon.proc.returncode == 3
    assert "no space left on device" in log and "disk I/O error" not in log
    assert "Traceback" not in log

    cleared = daemon.cli("clear", "--yes", check=False)
    assert (cleared.returncode, cleared.stderr) == (0, "")
    assert cleared.stdout.splitlines() == ["Deleted 5 events."]
    daemon.start()
    assert daemon.status()["buffer"]["events"] == 0
