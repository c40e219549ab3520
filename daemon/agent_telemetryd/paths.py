"""Where the daemon keeps its config, buffer and sockets."""

from __future__ import annotations

import logging
import os
import stat
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import platformdirs

from agent_telemetry._paths import make_private_dirs, runtime_dir_choice

APP_NAME = "agent-telemetry"
_said: set[str] = set()


@dataclass(frozen=True)
class Paths:
    config_file: Path
    consent_file: Path
    data_dir: Path
    runtime_dir: Path

    @property
    def database(self) -> Path:
        return self.data_dir / "buffer.sqlite3"

    @property
    def dashboard_token(self) -> Path:
        return self.data_dir / "dashboard-token"

    @property
    def ingest_socket(self) -> Path:
        return self.runtime_dir / "ingest.sock"

    @property
    def api_socket(self) -> Path:
        return self.runtime_dir / "api.sock"

    @property
    def lock_file(self) -> Path:
        """Held by the daemon that serves this runtime folder's sockets: a command asks it
        whether a daemon answers here, and a socket file found while holding it is stale."""
        return self.runtime_dir / "daemon.lock"

    @property
    def buffer_lock(self) -> Path:
        """Held by whoever writes the buffer (the daemon, or a command with it down). Beside
        the buffer, not among the sockets: two starts that resolve different runtime
        folders still write the one buffer, and must meet here."""
        return self.data_dir / "buffer.lock"


def resolve_paths(environ: Mapping[str, str] = os.environ, platform: str | None = None) -> Paths:
    """Paths from `AGENT_TELEMETRY_HOME` when set, else the platform's user dirs.

    `platform` (a `sys.platform` value) is for tests that check another OS's choices.
    """
    home = environ.get("AGENT_TELEMETRY_HOME")
    if home:
        root = Path(home).expanduser().absolute()
        config_file = root / "config.toml"
        data_dir = root / "data"
    elif (platform or sys.platform) == "darwin":
        support = Path(environ.get("HOME") or Path.home()) / "Library" / "Application Support"
        config_file = support / APP_NAME / "config.toml"
        data_dir = support / APP_NAME
    else:
        config_file = Path(platformdirs.user_config_dir(APP_NAME, appauthor=False)) / "config.toml"
        data_dir = Path(platformdirs.user_data_dir(APP_NAME, appauthor=False))
    run_dir, passed_over = runtime_dir_choice(environ, platform)
    if passed_over and passed_over not in _said:
        _said.add(passed_over)  # once a process: resolve_paths() runs more than once
        logging.getLogger(__name__).warning("runtime folder %s; using %s", passed_over, run_dir)
    override = environ.get("AGENT_TELEMETRY_CONFIG")
    if override:
        config_file = Path(override).expanduser().absolute()
    return Paths(
        config_file=config_file,
        consent_file=config_file.parent / "consent.json",
        data_dir=data_dir,
        runtime_dir=run_dir,
    )


def ensure_private_dir(path: Path) -> None:
    """Create `path` (and parents) and make it 0700: sockets and the buffer are the user's alone."""
    make_private_dirs(path)
    os.chmod(path, 0o700)


def others_can_replace(path: Path) -> str | None:
    """Why a user other than this one (and root) could rename or replace `path`, or a
    folder above it, with the way out; None when no one can.

    They can when a folder on the way is theirs, or when anyone may write in it and it is
    not sticky (in a sticky folder such as /tmp only a name's owner may remove it). The
    buffer and the spool in such a place could be swapped for files of theirs, or removed.
    Group write is not counted: many users have a group of their own (umask 002).
    """
    me = os.geteuid()
    real = Path(os.path.realpath(path))
    for folder in (real, *real.parents):
        try:
            info = os.lstat(folder)
        except FileNotFoundError:
            continue  # made later by the daemon, 0700
        except OSError as error:
            return f"{folder} cannot be examined ({error.strerror})"
        if info.st_uid not in (me, 0):
            return (
                f"{folder} belongs to uid {info.st_uid}; keep the data in a folder of your "
                "own (AGENT_TELEMETRY_HOME, XDG_DATA_HOME)"
            )
        if info.st_mode & stat.S_IWOTH and not info.st_mode & stat.S_ISVTX:
            mode = stat.S_IMODE(info.st_mode)
            return f"anyone may write in {folder} (mode {mode:04o}); run: chmod o-w {folder}"
    return None
