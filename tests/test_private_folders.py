"""Folders a first run makes in the user's home: closed to other users whatever the umask.

A user with `umask 000` (some shared boxes and containers have it) runs a command or an
agent before the daemon ever ran. Another local user must not be able to put anything in
what that made: not a consent record of their own saying `upload`, nothing in the spool.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent_telemetryd.service.install import install
from tests.daemon_process import DaemonProcess, clean_environment
from tests.test_service_install import FakeManager, manager  # noqa: F401 (a fixture)
from tests.test_tcp_peers import as_other_user

# Another user's try at writing into each folder named on the command line; with
# `consent.json` beside it, a record of their own renamed over the user's.
PLANT = """
import json, os, sys
answers = {}
for folder in sys.argv[1:]:
    planted = os.path.join(folder, ".planted")
    try:
        with open(planted, "w") as out:
            out.write('{"mode": "upload", "since": "2026-01-01T00:00:00Z", "history": []}')
        if os.path.exists(os.path.join(folder, "consent.json")):
            os.replace(planted, os.path.join(folder, "consent.json"))
        answers[folder] = "written"
    except OSError as error:
        answers[folder] = error.strerror
print(json.dumps(answers))
"""


@contextlib.contextmanager
def permissive_umask() -> Iterator[None]:
    """`umask 000` for what this process starts meanwhile."""
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


@pytest.fixture
def user_home() -> Iterator[Path]:
    """An empty home folder others may enter (0755, as useradd makes them)."""
    home = Path(tempfile.mkdtemp(prefix="at-home-", dir="/tmp"))
    home.chmod(0o755)
    yield home
    shutil.rmtree(home, ignore_errors=True)


def first_run_environment(home: Path) -> dict[str, str]:
    """The platform's default places under `home`: no AGENT_TELEMETRY_HOME, no XDG dirs."""
    env = clean_environment(home)
    for name in ("AGENT_TELEMETRY_HOME", "XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_STATE_HOME"):
        env.pop(name, None)
    env.update(HOME=str(home), XDG_RUNTIME_DIR=str(home / "runtime"))
    return env


def folders_under(home: Path) -> list[Path]:
    return sorted(path for path in home.rglob("*") if path.is_dir())


def planted_by_another_user(folders: list[Path]) -> dict[str, str]:
    result = as_other_user(sys.executable, "-c", PLANT, *map(str, folders))
    assert result.returncode == 0, result.stderr
    return dict(json.loads(result.stdout))


def test_another_user_cannot_swap_the_consent_record_a_first_command_made(
    user_home: Path,
) -> None:
    """`mode local` under umask 000 made ~/.config and its agent-telemetry folder: another
    user renaming a record of their own over consent.json would turn upload on."""
    cli = DaemonProcess(user_home, first_run_environment(user_home))
    with permissive_umask():
        cli.cli("mode", "local")
    consent = user_home / ".config" / "agent-telemetry" / "consent.json"
    assert consent.is_file()
    made = folders_under(user_home)
    assert made == [user_home / ".config", consent.parent]
    answers = planted_by_another_user(made)
    status = cli.status()
    assert (status["mode"], status["mode_source"]) == ("local", "command")
    assert answers == {str(path): "Permission denied" for path in made}
    assert {stat.S_IMODE(path.stat().st_mode) for path in made} == {0o700}


def test_another_user_cannot_write_into_the_folders_an_agents_spool_made(
    user_home: Path,
) -> None:
    """An agent tracking with no daemon up spools under ~/.local/share: the folders it had
    to make there (~/.local too, where ~/.local/bin may later go on PATH) are the user's."""
    agent = "from agent_telemetry import track; track('agent.run.completed')"
    with permissive_umask():
        subprocess.run(
            [sys.executable, "-c", agent],
            env=first_run_environment(user_home),
            check=True,
            timeout=60,
        )
    spool = user_home / ".local" / "share" / "agent-telemetry" / "spool"
    assert len(list(spool.glob("*.ndjson"))) == 1
    made = folders_under(user_home)
    assert made == [user_home / ".local", *spool.parents[:2][::-1], spool]
    answers = planted_by_another_user(made)
    assert answers == {str(path): "Permission denied" for path in made}
    assert {stat.S_IMODE(path.stat().st_mode) for path in made} == {0o700}


def test_service_install_makes_unit_folders_its_owner_can_enter_and_no_one_else(
    user_home: Path,
    manager: FakeManager,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """On an account with no ~/.config/systemd/user yet, the folder was made 0644: without
    its x bit its own (non-root) user could not write the unit files into it, and install
    failed with "Permission denied". Now every folder it makes is 0700, whatever the umask."""
    monkeypatch.setenv("HOME", str(user_home))
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    with permissive_umask():
        install(home=user_home, platform="linux", uid=os.getuid())
    unit_dir = user_home / ".config" / "systemd" / "user"
    assert (unit_dir / "agent-telemetry.service").is_file()
    made = folders_under(user_home)
    assert unit_dir in made
    assert {str(path): stat.S_IMODE(path.stat().st_mode) for path in made} == {
        str(path): 0o700 for path in made
    }
