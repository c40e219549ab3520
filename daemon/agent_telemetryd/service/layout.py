"""Where the service definitions live on each platform, and the one error type of this package."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from agent_telemetryd.service.render import LAUNCHD_TEMPLATES, SYSTEMD_TEMPLATES

__all__ = [
    "FALLBACK_ADVICE",
    "Platform",
    "ServiceError",
    "current_platform",
    "log_dir",
    "managed_files",
    "service_dir",
]

Platform = Literal["linux", "darwin"]

# What a user can do when there is no service manager to install into.
FALLBACK_ADVICE = "run `agent-telemetry daemon` from a login script (e.g. ~/.profile) instead"


class ServiceError(Exception):
    """A one-line reason the service could not be installed, removed or inspected."""


def current_platform(name: str | None = None) -> Platform:
    """``linux`` or ``darwin`` from ``sys.platform`` (or ``name``); anything else is an error."""
    name = sys.platform if name is None else name
    if name.startswith("linux"):
        return "linux"
    if name == "darwin":
        return "darwin"
    raise ServiceError(f"no user service manager support on {name}; {FALLBACK_ADVICE}")


def service_dir(home: Path, platform: Platform, environ: Mapping[str, str] | None = None) -> Path:
    """Where the service definition goes: systemd's user unit dir, or ``~/Library/LaunchAgents``.

    ``environ`` is consulted for ``XDG_CONFIG_HOME`` (systemd looks there, not in
    ``~/.config``, when it is set); tests pass None to stay inside their temporary home.
    """
    if platform == "darwin":
        return home / "Library" / "LaunchAgents"
    config_home = (environ or {}).get("XDG_CONFIG_HOME", "")
    base = Path(config_home) if os.path.isabs(config_home) else home / ".config"
    return base / "systemd" / "user"


def log_dir(home: Path) -> Path:
    """The LaunchAgent's log folder (systemd units log to the journal instead)."""
    return home / "Library" / "Logs" / "agent-telemetry"


def managed_files(
    home: Path, platform: Platform, environ: Mapping[str, str] | None = None
) -> list[Path]:
    """Every service definition install writes and uninstall removes (not the environment
    file, which holds the user's keys: uninstall removes it only as install left it)."""
    target = service_dir(home, platform, environ)
    names = LAUNCHD_TEMPLATES if platform == "darwin" else SYSTEMD_TEMPLATES
    return [target / name for name in names]
