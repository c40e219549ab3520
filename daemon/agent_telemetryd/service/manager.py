"""Talking to the user's service manager: is there one, and what does it say about us.

All commands go through a ``Runner`` so tests can substitute a recorder or a fake
``systemctl``/``launchctl`` on ``PATH``.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from agent_telemetryd.service.layout import (
    FALLBACK_ADVICE,
    Platform,
    ServiceError,
    current_platform,
    log_dir,
    managed_files,
)
from agent_telemetryd.service.render import (
    FLUSH_LABEL,
    FLUSH_TIMER,
    HTTP_SOCKET_UNIT,
    LAUNCHD_LABEL,
    SERVICE_UNIT,
    SOCKET_UNIT,
    SYSTEMD_TEMPLATES,
)
from agent_telemetryd.service.settings import service_http_listen

__all__ = [
    "STARTED_UNITS",
    "SYSTEMD_UNITS",
    "Runner",
    "ServiceStatus",
    "UnitState",
    "check_manager",
    "first_line",
    "run_command",
    "service_status",
]

Runner = Callable[[Sequence[str]], "subprocess.CompletedProcess[str]"]

# The units that start at login; the flush service is started by its timer.
SYSTEMD_UNITS = (SOCKET_UNIT, HTTP_SOCKET_UNIT, SERVICE_UNIT, FLUSH_TIMER)
# The ones install starts itself (`enable --now`). Not the HTTP port's: on a taken port it
# fails, and systemctl would report the whole command failed although ingest works. The
# service's Sockets= starts it anyway, before the daemon, and a failure there is no error.
STARTED_UNITS = tuple(unit for unit in SYSTEMD_UNITS if unit != HTTP_SOCKET_UNIT)
# Everything stop and reset-failed cover: a flush may be running, or have failed.
ALL_SYSTEMD_UNITS = SYSTEMD_TEMPLATES
LAUNCHD_LABELS = (LAUNCHD_LABEL, FLUSH_LABEL)
_COMMAND_TIMEOUT_S = 60.0
# States in which `systemctl --user is-system-running` proves a manager answered (it exits
# non-zero for "degraded", so the exit status alone cannot tell).
_MANAGER_STATES = frozenset({"running", "degraded", "starting", "initializing", "maintenance"})


def run_command(argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
    """Run a service-manager command, capturing its output; never raises for a bad exit."""
    try:
        return subprocess.run(
            list(argv), capture_output=True, text=True, timeout=_COMMAND_TIMEOUT_S, check=False
        )
    except FileNotFoundError:
        return subprocess.CompletedProcess(list(argv), 127, "", f"{argv[0]}: command not found")
    except subprocess.TimeoutExpired:
        return subprocess.CompletedProcess(list(argv), 124, "", f"{argv[0]}: timed out")


def first_line(result: subprocess.CompletedProcess[str]) -> str:
    """The first non-empty line of a command's stderr (else stdout), for one-line errors."""
    for text in (result.stderr, result.stdout):
        for line in (text or "").splitlines():
            if line.strip():
                return line.strip()
    return f"exit status {result.returncode}"


def check_manager(
    platform: Platform,
    *,
    environ: Mapping[str, str] = os.environ,
    run: Runner = run_command,
    uid: int | None = None,
) -> None:
    """Raise :class:`ServiceError` with advice when there is no user service manager to talk to."""
    uid = os.getuid() if uid is None else uid
    if platform == "darwin":
        result = run(("launchctl", "print", f"gui/{uid}"))
        if result.returncode != 0:
            raise ServiceError(
                f"no launchd GUI session for uid {uid} (`launchctl print gui/{uid}`: "
                f"{first_line(result)}); log in at the Mac, or {FALLBACK_ADVICE}"
            )
        return
    if not environ.get("XDG_RUNTIME_DIR"):
        raise ServiceError(
            "no systemd user manager: XDG_RUNTIME_DIR is not set (not a login session: "
            f"su, sudo, cron or a container); {FALLBACK_ADVICE}"
        )
    result = run(("systemctl", "--user", "is-system-running"))
    state = result.stdout.strip()
    if state in _MANAGER_STATES:
        return
    raise ServiceError(
        "no systemd user manager reachable (`systemctl --user is-system-running`: "
        f"{state or first_line(result)}); {FALLBACK_ADVICE}"
    )


@dataclass(frozen=True)
class UnitState:
    """What the manager says about one unit (or the one LaunchAgent job)."""

    name: str
    loaded: bool
    enabled: bool
    state: str  # systemd ActiveState/SubState ("active/listening"), launchd "state = …"
    pid: int | None = None


@dataclass(frozen=True)
class ServiceStatus:
    """``service status``: installed (files), enabled (starts at login), running (a pid)."""

    platform: Platform
    installed: bool
    enabled: bool
    running: bool
    pid: int | None
    manager: bool
    manager_detail: str | None
    files: dict[str, bool]
    units: list[UnitState] = field(default_factory=list)
    logs: str = ""
    # Installed definitions that differ from what `service install` writes now (an older
    # version's), or are missing beside the others: install updates them.
    outdated: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def service_status(
    *,
    home: Path | None = None,
    platform: Platform | None = None,
    environ: Mapping[str, str] = os.environ,
    run: Runner = run_command,
    uid: int | None = None,
) -> ServiceStatus:
    """Inspect files and manager; never raises for a missing manager, it reports it."""
    platform = current_platform() if platform is None else platform
    uid = os.getuid() if uid is None else uid
    real_home = Path.home() if home is None else home
    paths = managed_files(real_home, platform, _paths_env(home, environ))
    if platform == "linux" and service_http_listen(environ, platform) is None:
        # TCP off: install writes no HTTP socket unit, so none is missing; one still there
        # is listed (and called out of date below: install removes it).
        paths = [p for p in paths if p.name != HTTP_SOCKET_UNIT or p.exists()]
    files = {str(p): p.is_file() for p in paths}
    installed = all(files.values())
    try:
        check_manager(platform, environ=environ, run=run, uid=uid)
        manager, detail = True, None
    except ServiceError as exc:
        manager, detail = False, str(exc)

    if platform == "darwin":
        logs = f"{log_dir(real_home)}/daemon.log"
        units = [_launchd_job(run, uid, installed, label) for label in LAUNCHD_LABELS]
        units = units if manager else []
    else:
        logs = "journalctl --user -u agent-telemetry"
        listed = {Path(path).name for path in files}
        names = [u for u in SYSTEMD_UNITS if u != HTTP_SOCKET_UNIT or u in listed]
        units = _systemd_units(run, names) if manager else []

    # Imported here: install imports this module.
    from agent_telemetryd.service.install import outdated_files

    outdated = outdated_files(home=home, platform=platform, environ=environ, uid=uid)
    service = next((u for u in units if u.name in (SERVICE_UNIT, LAUNCHD_LABEL)), None)
    running = service is not None and service.pid is not None
    enabled = bool(units) and all(u.enabled for u in units)
    return ServiceStatus(
        platform=platform,
        installed=installed,
        enabled=enabled,
        running=running,
        pid=service.pid if running and service else None,
        manager=manager,
        manager_detail=detail,
        files=files,
        units=units,
        logs=logs,
        outdated=outdated,
    )


def _paths_env(home: Path | None, environ: Mapping[str, str]) -> Mapping[str, str] | None:
    # An explicit home (tests, a temp dir) must not be redirected by the caller's XDG vars.
    return environ if home is None else None


def _systemd_units(run: Runner, names: Sequence[str]) -> list[UnitState]:
    result = run(
        (
            "systemctl",
            "--user",
            "show",
            *names,
            "--property=Id,LoadState,ActiveState,SubState,UnitFileState,MainPID",
        )
    )
    blocks = [b for b in result.stdout.split("\n\n") if b.strip()]
    units: list[UnitState] = []
    for name, block in zip(names, blocks, strict=False):
        props = dict(line.split("=", 1) for line in block.splitlines() if "=" in line)
        main_pid = int(props.get("MainPID", "0") or 0)
        units.append(
            UnitState(
                name=props.get("Id", name),
                loaded=props.get("LoadState") == "loaded",
                enabled=props.get("UnitFileState") in ("enabled", "enabled-runtime"),
                state=f"{props.get('ActiveState', 'unknown')}/{props.get('SubState', 'unknown')}",
                pid=main_pid or None,
            )
        )
    return units


def _launchd_job(run: Runner, uid: int, installed: bool, label: str) -> UnitState:
    printed = run(("launchctl", "print", f"gui/{uid}/{label}"))
    loaded = printed.returncode == 0
    state_match = re.search(r"^\s*state = (.+)$", printed.stdout, re.MULTILINE) if loaded else None
    pid_match = re.search(r"^\s*pid = (\d+)$", printed.stdout, re.MULTILINE) if loaded else None
    disabled = run(("launchctl", "print-disabled", f"gui/{uid}"))
    # Older macOS prints `"label" => true`, newer `"label" => disabled`.
    off = re.search(rf'"{re.escape(label)}" => (true|disabled)', disabled.stdout)
    return UnitState(
        name=label,
        loaded=loaded,
        enabled=installed and off is None,
        state=state_match.group(1).strip() if state_match else "not loaded",
        pid=int(pid_match.group(1)) if pid_match else None,
    )
