"""Where the daemon's files live: one rule, shared by the shims and the daemon.

The daemon imports `runtime_dir()` from here; its data dir and config file rules (in
`agent_telemetryd.paths`, which uses platformdirs) are mirrored by `data_dir()` and
`config_file()` without it, since the shim is standard library only. A test holds the two
equal.
"""

from __future__ import annotations

import errno
import os
import stat
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

APP_NAME = "agent-telemetry"
INGEST_SOCKET_NAME = "ingest.sock"
SPOOL_DIR_NAME = "spool"
# The private folder that stands in for a runtime folder someone else has taken.
FALLBACK_RUNTIME_NAME = "run"


def _env(environ: Mapping[str, str] | None) -> Mapping[str, str]:
    return os.environ if environ is None else environ


def _home_root(env: Mapping[str, str]) -> Path | None:
    home = env.get("AGENT_TELEMETRY_HOME")
    return Path(home).expanduser().absolute() if home else None


def _user_home(env: Mapping[str, str]) -> str:
    """`~` as platformdirs reads it: $HOME when absolute, else the account's home."""
    home = env.get("HOME")
    if home is not None and not os.path.isabs(home):
        home = None  # a relative HOME counts as unset, as platformdirs treats it
    if home is None:
        import pwd  # only here: most agents have an absolute $HOME

        home = pwd.getpwuid(os.getuid()).pw_dir
    if not os.path.isabs(home):
        raise RuntimeError("the home directory cannot be worked out")
    return home.rstrip("/") or "/"


def _xdg(env: Mapping[str, str], name: str, default: str) -> str:
    # platformdirs takes an XDG variable only when it is an absolute path.
    value = env.get(name, "")
    return value if os.path.isabs(value) else os.path.join(_user_home(env), default)


def data_dir(environ: Mapping[str, str] | None = None, platform: str | None = None) -> Path:
    """The daemon's data dir: `H/data` under `AGENT_TELEMETRY_HOME=H`, else the user data dir.

    Linux: `$XDG_DATA_HOME/agent-telemetry` or `~/.local/share/agent-telemetry`; macOS:
    `~/Library/Application Support/agent-telemetry`.
    """
    env = _env(environ)
    root = _home_root(env)
    if root is not None:
        return root / "data"
    if (platform or sys.platform) == "darwin":
        return _macos_support(env) / APP_NAME
    return Path(_xdg(env, "XDG_DATA_HOME", ".local/share")) / APP_NAME


def config_file(environ: Mapping[str, str] | None = None, platform: str | None = None) -> Path:
    """The config file: `AGENT_TELEMETRY_CONFIG`, else `H/config.toml`, else the user config dir."""
    env = _env(environ)
    override = env.get("AGENT_TELEMETRY_CONFIG")
    if override:
        return Path(override).expanduser().absolute()
    root = _home_root(env)
    if root is not None:
        return root / "config.toml"
    if (platform or sys.platform) == "darwin":
        return _macos_support(env) / APP_NAME / "config.toml"
    return Path(_xdg(env, "XDG_CONFIG_HOME", ".config")) / APP_NAME / "config.toml"


def consent_file(environ: Mapping[str, str] | None = None, platform: str | None = None) -> Path:
    """Where `agent-telemetry mode|enable|disable` stores the choice: next to the config file."""
    return config_file(environ, platform).parent / "consent.json"


def spool_dir(environ: Mapping[str, str] | None = None, platform: str | None = None) -> Path:
    """The private folder where shims leave what they could not hand to the daemon."""
    return data_dir(environ, platform) / SPOOL_DIR_NAME


def _macos_support(env: Mapping[str, str]) -> Path:
    return Path(env.get("HOME") or Path.home()) / "Library" / "Application Support"


def preferred_runtime_dir(
    environ: Mapping[str, str] | None = None, platform: str | None = None
) -> Path:
    """The runtime folder the environment names, before checking who owns it.

    `AGENT_TELEMETRY_HOME=H` gives `H/run`; else `$XDG_RUNTIME_DIR/agent-telemetry`; else
    `$TMPDIR/agent-telemetry` on macOS; else `/tmp/agent-telemetry-<uid>`.
    """
    env = _env(environ)
    root = _home_root(env)
    if root is not None:
        return root / "run"
    xdg = env.get("XDG_RUNTIME_DIR")
    if xdg:
        return Path(xdg) / APP_NAME
    if (platform or sys.platform) == "darwin":
        # macOS gives every user a private $TMPDIR; /tmp there is shared by all users.
        return Path(env.get("TMPDIR") or "/tmp") / APP_NAME
    # The uid in the name keeps users apart in a shared /tmp; the daemon makes it 0700.
    return Path("/tmp") / f"{APP_NAME}-{os.getuid()}"


def private_dir_problem(path: str | os.PathLike[str]) -> str | None:
    """Why `path` is not this user's own private folder, or None when it is (or is absent).

    Own means: a real directory (not a symlink), owned by this process's effective uid, with
    no access for group or others. Anything else may be read, or swapped, by someone else.
    """
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return None
    except OSError as error:
        return f"cannot be examined ({error.strerror})"
    if stat.S_ISLNK(info.st_mode):
        return "is a symbolic link"
    if not stat.S_ISDIR(info.st_mode):
        return "is not a directory"
    if info.st_uid != os.geteuid():
        return f"belongs to uid {info.st_uid}"
    if info.st_mode & 0o077:
        return f"has mode {stat.S_IMODE(info.st_mode):04o}, not 0700"
    return None


def others_file_problem(info: os.stat_result) -> str | None:
    """Why a file (its `os.stat` result) may hold what someone else wrote, or None when only
    this user can have: it belongs to another uid, or its group or others may change it."""
    if info.st_uid != os.geteuid():
        return f"belongs to uid {info.st_uid}"
    mode = stat.S_IMODE(info.st_mode)
    if mode & (stat.S_IWGRP | stat.S_IWOTH):
        return f"has mode {mode:04o}, so others may change it"
    return None


# Opened without waiting: a named pipe at a file's path would otherwise hold open() until
# someone writes into it, which may be never, and another user can make one in a shared
# folder (AGENT_TELEMETRY_CONFIG=/tmp/team.toml reads /tmp/consent.json). A regular file
# opens at once either way. Links are followed, as before.
_READ_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
_KINDS = (
    (stat.S_ISFIFO, "a named pipe"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISDIR, "a directory"),
)


class NotRegularFileError(OSError):
    """The path names something other than a regular file; `info` is its `os.fstat`."""

    def __init__(self, path: str | os.PathLike[str], info: os.stat_result) -> None:
        kind = next((name for test, name in _KINDS if test(info.st_mode)), "not a file")
        super().__init__(errno.EINVAL, f"is not a regular file ({kind})", os.fspath(path))
        self.info = info

    def __str__(self) -> str:
        return f"{self.filename} {self.strerror}"


def open_regular(path: str | os.PathLike[str], mode: str = "rb", **options: Any) -> IO[Any]:
    """`path` opened for reading (`mode` and `options` as for `open`), or
    NotRegularFileError when it is not a regular file: reading a pipe, a device or a
    socket could wait forever, and none of them is a file anyone wrote settings into."""
    fd = os.open(path, _READ_FLAGS)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise NotRegularFileError(path, info)
        return os.fdopen(fd, mode, **options)
    except BaseException:
        os.close(fd)
        raise


def make_private_dirs(path: str | os.PathLike[str]) -> list[Path]:
    """Make `path` and every missing folder above it 0700, whatever the umask; return those
    made, outermost first. Folders that are already there are left as they are.

    pathlib's mkdir(parents=True) gives the parents it makes the umask's mode: under umask
    000 a first run would leave ~/.local, ~/.local/share and ~/.config open to every user,
    who could then swap what is inside (the consent record, the buffer, the spool, and
    other programs' files too, ~/.local/bin among them). The XDG base directory spec asks
    for 0700 for the folders a program makes there.
    """
    target = Path(path)
    missing: list[Path] = []
    folder = target
    while not os.path.lexists(folder) and folder.parent != folder:
        missing.append(folder)
        folder = folder.parent
    made: list[Path] = []
    for folder in reversed(missing):
        try:
            os.mkdir(folder, 0o700)
        except FileExistsError:
            continue  # made meanwhile, by another process of this user or by someone else
        os.chmod(folder, 0o700)  # a umask may take the user's own bits away too
        made.append(folder)
    if not target.is_dir():
        raise FileExistsError(errno.EEXIST, "exists and is not a directory", str(target))
    return made


def runtime_dir_choice(
    environ: Mapping[str, str] | None = None, platform: str | None = None
) -> tuple[Path, str | None]:
    """The runtime folder to use, and why the preferred one was passed over (None if it wasn't).

    A preferred folder that exists but is not this user's own 0700 folder — another user may
    have made it first in a shared /tmp — is never used: `<data dir>/run` is used instead, so
    the daemon and every shim land on the same private place.
    """
    env = _env(environ)
    preferred = preferred_runtime_dir(env, platform)
    problem = private_dir_problem(preferred)
    if problem is None:
        return preferred, None
    return data_dir(env, platform) / FALLBACK_RUNTIME_NAME, f"{preferred} {problem}"


def runtime_dir(environ: Mapping[str, str] | None = None, platform: str | None = None) -> Path:
    """The 0700 directory that holds the daemon's sockets and lock file (see runtime_dir_choice)."""
    return runtime_dir_choice(environ, platform)[0]


def ingest_socket_path(
    environ: Mapping[str, str] | None = None, platform: str | None = None
) -> Path:
    """The NDJSON ingest socket the shims write to."""
    return runtime_dir(environ, platform) / INGEST_SOCKET_NAME
