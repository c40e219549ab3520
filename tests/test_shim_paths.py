"""The shim's path rules: the same data dir, config file and runtime folder as the daemon's."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent_telemetry import _paths
from agent_telemetryd.paths import resolve_paths

# Each case is applied to os.environ: platformdirs, which the daemon uses, reads only that.
ENVIRONMENTS = {
    "home only": {"HOME": "/home/ada"},
    "XDG data and config": {
        "HOME": "/home/ada",
        "XDG_DATA_HOME": "/xdg/data",
        "XDG_CONFIG_HOME": "/xdg/config",
    },
    "relative XDG values are ignored": {
        "HOME": "/home/ada",
        "XDG_DATA_HOME": "rel/data",
        "XDG_CONFIG_HOME": "rel/config",
    },
    "relative HOME means the account's home": {"HOME": "not/absolute"},
    "no HOME": {},
    "AGENT_TELEMETRY_HOME": {"HOME": "/home/ada", "AGENT_TELEMETRY_HOME": "/srv/at"},
    "AGENT_TELEMETRY_HOME with ~": {"HOME": "/home/ada", "AGENT_TELEMETRY_HOME": "~/at"},
    "AGENT_TELEMETRY_CONFIG": {
        "HOME": "/home/ada",
        "XDG_CONFIG_HOME": "/xdg/config",
        "AGENT_TELEMETRY_CONFIG": "/etc/at/custom.toml",
    },
    "AGENT_TELEMETRY_CONFIG under HOME": {
        "AGENT_TELEMETRY_HOME": "/srv/at",
        "AGENT_TELEMETRY_CONFIG": "~/at.toml",
        "HOME": "/home/ada",
    },
}
_VARIABLES = (
    "HOME",
    "XDG_DATA_HOME",
    "XDG_CONFIG_HOME",
    "XDG_RUNTIME_DIR",
    "AGENT_TELEMETRY_HOME",
    "AGENT_TELEMETRY_CONFIG",
)


@pytest.mark.parametrize("platform", ["linux", "darwin"])
@pytest.mark.parametrize("case", sorted(ENVIRONMENTS))
def test_data_dir_config_and_consent_file_equal_the_daemons(
    case: str, platform: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in _VARIABLES:
        monkeypatch.delenv(name, raising=False)
    for name, value in ENVIRONMENTS[case].items():
        monkeypatch.setenv(name, value)
    daemon = resolve_paths(os.environ, platform)
    assert _paths.data_dir(None, platform) == daemon.data_dir
    assert _paths.config_file(None, platform) == daemon.config_file
    assert _paths.consent_file(None, platform) == daemon.consent_file
    assert _paths.spool_dir(None, platform) == daemon.data_dir / "spool"
    assert _paths.runtime_dir(None, platform) == daemon.runtime_dir


def test_linux_defaults_follow_xdg() -> None:
    env = {"HOME": "/home/ada"}
    assert _paths.data_dir(env, "linux") == Path("/home/ada/.local/share/agent-telemetry")
    assert _paths.config_file(env, "linux") == Path("/home/ada/.config/agent-telemetry/config.toml")
    env["XDG_DATA_HOME"] = "/x/data"
    assert _paths.spool_dir(env, "linux") == Path("/x/data/agent-telemetry/spool")


def test_macos_uses_application_support() -> None:
    env = {"HOME": "/Users/ada"}
    support = Path("/Users/ada/Library/Application Support/agent-telemetry")
    assert _paths.data_dir(env, "darwin") == support
    assert _paths.consent_file(env, "darwin") == support / "consent.json"


@pytest.fixture
def parent() -> Iterator[Path]:
    # Stands in for a shared parent such as /tmp or $XDG_RUNTIME_DIR.
    path = Path(tempfile.mkdtemp(prefix="at-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _env(parent: Path) -> dict[str, str]:
    return {"XDG_RUNTIME_DIR": str(parent / "xdg-run"), "XDG_DATA_HOME": str(parent / "data")}


def test_an_absent_or_private_runtime_folder_is_used(parent: Path) -> None:
    env = _env(parent)
    preferred = parent / "xdg-run" / "agent-telemetry"
    assert _paths.runtime_dir_choice(env, "linux") == (preferred, None)
    preferred.mkdir(parents=True, mode=0o700)
    os.chmod(preferred, 0o700)
    assert _paths.runtime_dir_choice(env, "linux") == (preferred, None)


def _squat_loose(folder: Path) -> None:
    folder.mkdir(parents=True)
    os.chmod(folder, 0o777)


def _squat_symlink(folder: Path) -> None:
    target = folder.parent / "elsewhere"
    target.mkdir(parents=True, mode=0o700)
    folder.symlink_to(target)


def _squat_file(folder: Path) -> None:
    folder.parent.mkdir(parents=True)
    folder.write_text("")


@pytest.mark.parametrize(
    ("squat", "why"),
    [
        (_squat_loose, "has mode 0777, not 0700"),
        (_squat_symlink, "is a symbolic link"),
        (_squat_file, "is not a directory"),
    ],
)
def test_a_runtime_folder_that_is_not_private_is_passed_over_for_the_data_dir(
    parent: Path, squat: object, why: str
) -> None:
    env = _env(parent)
    preferred = parent / "xdg-run" / "agent-telemetry"
    squat(preferred)  # type: ignore[operator]
    chosen, reason = _paths.runtime_dir_choice(env, "linux")
    assert chosen == parent / "data" / "agent-telemetry" / "run"
    assert reason == f"{preferred} {why}"
    assert _paths.ingest_socket_path(env, "linux") == chosen / "ingest.sock"


@pytest.mark.skipif(os.geteuid() != 0, reason="making another uid's folder needs root")
def test_another_users_runtime_folder_is_passed_over(parent: Path) -> None:
    env = _env(parent)
    preferred = parent / "xdg-run" / "agent-telemetry"
    preferred.mkdir(parents=True, mode=0o700)
    os.chown(preferred, 65534, 65534)  # nobody
    chosen, reason = _paths.runtime_dir_choice(env, "linux")
    assert chosen == parent / "data" / "agent-telemetry" / "run"
    assert reason == f"{preferred} belongs to uid 65534"
