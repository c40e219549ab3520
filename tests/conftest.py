"""Fixtures shared by the whole suite: the real daemon as a subprocess, a small real disk."""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.daemon_process import DaemonProcess, clean_environment, make_home

DaemonFactory = Callable[..., DaemonProcess]
SHARED_FOLDERS = (Path("/tmp"), Path("/var/tmp"), Path("/dev/shm"))


@pytest.fixture(autouse=True)
def shared_folders_stay_shared() -> Iterator[None]:
    """No code under test may tighten a folder every user shares (tests run as root, where
    a chmod of /tmp would succeed and lock other users out of it): the test that did is
    named, and the mode is put back."""
    before = {path: path.stat().st_mode for path in SHARED_FOLDERS if path.is_dir()}
    yield
    changed = {}
    for path, mode in before.items():
        now = path.stat().st_mode
        if now != mode:
            os.chmod(path, stat.S_IMODE(mode))
            changed[str(path)] = f"{stat.S_IMODE(mode):o} -> {stat.S_IMODE(now):o}"
    assert not changed, f"the test changed the mode of shared folders: {changed}"


@pytest.fixture
def daemon_factory() -> Iterator[DaemonFactory]:
    """Make daemons (started unless start=False) in fresh homes; all are stopped afterwards."""
    made: list[DaemonProcess] = []

    def factory(
        env: dict[str, str] | None = None, *, start: bool = True, home: Path | None = None
    ) -> DaemonProcess:
        home = home or make_home()
        process = DaemonProcess(home, clean_environment(home, env))
        made.append(process)
        return process.start() if start else process

    yield factory
    for process in made:
        process.cleanup()


@pytest.fixture
def shared_folder() -> Iterator[Path]:
    """A folder every user may write in, as /tmp is (sticky, 1777), removed afterwards."""
    folder = Path(tempfile.mkdtemp(prefix="at-shared-", dir="/tmp"))
    folder.chmod(0o1777)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def daemon(daemon_factory: DaemonFactory) -> DaemonProcess:
    """A running daemon in the default (local) mode with rate limits off."""
    return daemon_factory({"AGENT_TELEMETRY_RATE_LIMIT": "off"})


@contextlib.contextmanager
def mounted_tmpfs(size: str) -> Iterator[Path]:
    """A tmpfs of `size` (`2m`): a real ENOSPC for SQLite, not a simulated one (needs root)."""
    mount_point = Path(f"/tmp/at-{size}-{os.getpid()}-{time.monotonic_ns()}")
    mount_point.mkdir()
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(mount_point)],
        check=True,
    )
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)
        mount_point.rmdir()


@pytest.fixture
def small_disk() -> Iterator[Path]:
    """A 2 MiB tmpfs."""
    with mounted_tmpfs("2m") as mount_point:
        yield mount_point
