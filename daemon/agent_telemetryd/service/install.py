"""``agent-telemetry service install|uninstall|status`` for systemd (Linux) and launchd (macOS).

Install and uninstall are first planned as an ordered list of steps (write a file, remove a
file, run a command) and then carried out; ``--dry-run`` shows the plan and stops. Every
path is computed from a ``home`` argument and every command goes through a ``run`` callable,
so tests point both at a temporary home and a fake ``systemctl``/``launchctl``.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from agent_telemetryd.service.layout import (
    Platform,
    ServiceError,
    current_platform,
    log_dir,
    managed_files,
    service_dir,
)
from agent_telemetryd.service.manager import (
    SYSTEMD_UNITS,
    Runner,
    check_manager,
    first_line,
    run_command,
)
from agent_telemetryd.service.render import (
    LAUNCHD_LABEL,
    PLIST_NAME,
    SERVICE_UNIT,
    SOCKET_UNIT,
    render_launchd_plist,
    render_systemd_service,
    render_systemd_socket,
)

__all__ = [
    "Plan",
    "Step",
    "find_executable",
    "install",
    "plan_install",
    "plan_uninstall",
    "uninstall",
]

EXECUTABLE_NAME = "agent-telemetry"


@dataclass(frozen=True)
class Step:
    """One thing install or uninstall does, in order.

    ``kind`` is ``write`` (``path`` gets ``content``), ``remove`` (``path`` is deleted),
    ``mkdir`` (``path`` is created) or ``run`` (``argv`` is executed; a failure stops the
    plan unless ``may_fail``, which marks clean-up commands whose failure only means there
    was nothing to clean up).
    """

    kind: Literal["write", "remove", "mkdir", "run"]
    path: Path | None = None
    content: str | None = None
    argv: tuple[str, ...] = ()
    may_fail: bool = False

    def describe(self) -> str:
        if self.kind == "run":
            return " ".join(self.argv)
        return str(self.path)

    def to_dict(self) -> dict[str, Any]:
        if self.kind == "run":
            return {"run": list(self.argv), "may_fail": self.may_fail}
        data: dict[str, Any] = {self.kind: str(self.path)}
        if self.content is not None:
            data["content"] = self.content
        return data


@dataclass(frozen=True)
class Plan:
    """What ``install``/``uninstall`` does (or, in a dry run, would do)."""

    action: Literal["install", "uninstall"]
    platform: Platform
    steps: tuple[Step, ...]
    notes: tuple[str, ...] = ()
    dry_run: bool = False
    # Commands that failed but were allowed to (``may_fail``): command → first error line.
    tolerated: dict[str, str] = field(default_factory=dict)

    @property
    def files(self) -> list[Path]:
        return [s.path for s in self.steps if s.kind in ("write", "remove") and s.path]

    @property
    def commands(self) -> list[tuple[str, ...]]:
        return [s.argv for s in self.steps if s.kind == "run"]

    def to_dict(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "platform": self.platform,
            "dry_run": self.dry_run,
            "steps": [s.to_dict() for s in self.steps],
            "notes": list(self.notes),
            "tolerated_failures": dict(self.tolerated),
        }


def find_executable(argv0: str | None = None) -> Path:
    """The absolute path of the installed ``agent-telemetry`` executable.

    Preference: the program that is running (``sys.argv[0]``, when it is ``agent-telemetry``),
    then ``agent-telemetry`` on ``PATH``, then the one beside this Python (a venv's ``bin``).
    Symlinks are kept, not resolved: a pipx link in ``~/.local/bin`` survives upgrades, the
    venv path it points to may not.
    """
    argv0 = sys.argv[0] if argv0 is None else argv0
    candidates: list[str | None] = []
    if Path(argv0).name == EXECUTABLE_NAME:
        candidates.append(argv0 if os.sep in argv0 else shutil.which(argv0))
    candidates.append(shutil.which(EXECUTABLE_NAME))
    candidates.append(str(Path(sys.executable).parent / EXECUTABLE_NAME))
    for candidate in candidates:
        if candidate and os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return Path(os.path.abspath(candidate))
    raise ServiceError(
        "cannot find the installed `agent-telemetry` executable; install the package so it "
        "is on PATH, or pass --executable"
    )


def plan_install(
    home: Path,
    platform: Platform,
    executable: Path,
    *,
    uid: int | None = None,
    environ: Mapping[str, str] | None = None,
) -> Plan:
    """The steps that write the service definition and enable and start it."""
    uid = os.getuid() if uid is None else uid
    target = service_dir(home, platform, environ)
    steps: list[Step] = [Step("mkdir", path=target)]
    if platform == "darwin":
        plist = target / PLIST_NAME
        logs = log_dir(home)
        domain = f"gui/{uid}"
        steps += [
            Step("mkdir", path=logs),
            Step("write", path=plist, content=render_launchd_plist(executable, logs)),
            # A loaded copy keeps running the old definition; unload it first. Fails
            # harmlessly ("No such process") on a first install.
            Step("run", argv=("launchctl", "bootout", f"{domain}/{LAUNCHD_LABEL}"), may_fail=True),
            # A past `launchctl disable` outlives bootout and would make bootstrap fail.
            Step("run", argv=("launchctl", "enable", f"{domain}/{LAUNCHD_LABEL}")),
            Step("run", argv=("launchctl", "bootstrap", domain, str(plist))),
        ]
        notes = (
            f"logs: {logs}/daemon.log",
            "undo with: agent-telemetry service uninstall",
        )
        return Plan("install", platform, tuple(steps), notes)

    service_file = target / SERVICE_UNIT
    service_text = render_systemd_service(executable)
    steps += [
        Step("write", path=target / SOCKET_UNIT, content=render_systemd_socket()),
        Step("write", path=service_file, content=service_text),
        Step("run", argv=("systemctl", "--user", "daemon-reload")),
        Step("run", argv=("systemctl", "--user", "enable", "--now", *SYSTEMD_UNITS)),
    ]
    if service_file.exists() and _read(service_file) != service_text:
        # `enable --now` leaves a running daemon on the old definition (say, an executable
        # path from before an upgrade); restart it, or do nothing if it is stopped.
        steps.append(Step("run", argv=("systemctl", "--user", "try-restart", SERVICE_UNIT)))
    notes = (
        "logs: journalctl --user -u agent-telemetry",
        "undo with: agent-telemetry service uninstall",
    )
    return Plan("install", platform, tuple(steps), notes)


def plan_uninstall(
    home: Path,
    platform: Platform,
    *,
    uid: int | None = None,
    environ: Mapping[str, str] | None = None,
) -> Plan:
    """The steps that stop and disable the service and remove exactly what install wrote."""
    uid = os.getuid() if uid is None else uid
    present = [p for p in managed_files(home, platform, environ) if p.exists()]
    if not present:
        return Plan("uninstall", platform, (), ("not installed: nothing to remove",))
    steps: list[Step] = []
    if platform == "darwin":
        steps.append(
            Step("run", argv=("launchctl", "bootout", f"gui/{uid}/{LAUNCHD_LABEL}"), may_fail=True)
        )
        steps += [Step("remove", path=p) for p in present]
        notes: tuple[str, ...] = (f"logs are kept in {log_dir(home)}",)
        return Plan("uninstall", platform, tuple(steps), notes)

    steps.append(
        Step("run", argv=("systemctl", "--user", "disable", "--now", *SYSTEMD_UNITS), may_fail=True)
    )
    steps += [Step("remove", path=p) for p in present]
    steps += [
        Step("run", argv=("systemctl", "--user", "daemon-reload"), may_fail=True),
        # A unit that once failed stays listed as "not-found failed" until reset.
        Step("run", argv=("systemctl", "--user", "reset-failed", *SYSTEMD_UNITS), may_fail=True),
    ]
    notes = ("kept: the event buffer, the config and the journal's logs",)
    return Plan("uninstall", platform, tuple(steps), notes)


def install(
    *,
    home: Path | None = None,
    platform: Platform | None = None,
    executable: Path | None = None,
    dry_run: bool = False,
    environ: Mapping[str, str] = os.environ,
    run: Runner = run_command,
    uid: int | None = None,
) -> Plan:
    """Write the service definition for this platform, enable it and start it.

    ``home=None`` means the real home (and honours ``XDG_CONFIG_HOME``); a dry run checks
    nothing and changes nothing, it only returns the plan.
    """
    platform = current_platform() if platform is None else platform
    executable = find_executable() if executable is None else _existing_executable(executable)
    real_home, env_for_paths = _home(home, environ)
    plan = plan_install(real_home, platform, executable, uid=uid, environ=env_for_paths)
    if dry_run:
        return _as_dry_run(plan)
    check_manager(platform, environ=environ, run=run, uid=uid)
    return _execute(plan, run)


def uninstall(
    *,
    home: Path | None = None,
    platform: Platform | None = None,
    dry_run: bool = False,
    environ: Mapping[str, str] = os.environ,
    run: Runner = run_command,
    uid: int | None = None,
) -> Plan:
    """Stop and disable the service and remove its files.

    Works without a reachable manager too (the stop commands then fail harmlessly), so a
    user can always get rid of the files.
    """
    platform = current_platform() if platform is None else platform
    real_home, env_for_paths = _home(home, environ)
    plan = plan_uninstall(real_home, platform, uid=uid, environ=env_for_paths)
    if dry_run:
        return _as_dry_run(plan)
    return _execute(plan, run)


def _home(home: Path | None, environ: Mapping[str, str]) -> tuple[Path, Mapping[str, str] | None]:
    if home is None:
        return Path.home(), environ
    return home, None


def _existing_executable(path: Path) -> Path:
    absolute = Path(os.path.abspath(path))
    if not (absolute.is_file() and os.access(absolute, os.X_OK)):
        raise ServiceError(f"executable {absolute} does not exist or is not executable")
    return absolute


def _as_dry_run(plan: Plan) -> Plan:
    return Plan(plan.action, plan.platform, plan.steps, plan.notes, dry_run=True)


def _execute(plan: Plan, run: Runner) -> Plan:
    for step in plan.steps:
        try:
            if step.kind == "mkdir" and step.path:
                step.path.mkdir(parents=True, exist_ok=True)
            elif step.kind == "write" and step.path and step.content is not None:
                _write_atomically(step.path, step.content)
            elif step.kind == "remove" and step.path:
                step.path.unlink(missing_ok=True)
        except OSError as exc:
            raise ServiceError(f"cannot {step.kind} {step.path}: {exc.strerror or exc}") from exc
        if step.kind != "run":
            continue
        result = run(step.argv)
        if result.returncode == 0:
            continue
        if step.may_fail:
            plan.tolerated[step.describe()] = first_line(result)
            continue
        undo = " (undo with: agent-telemetry service uninstall)" if plan.action == "install" else ""
        raise ServiceError(f"`{step.describe()}` failed: {first_line(result)}{undo}")
    return plan


def _write_atomically(path: Path, content: str) -> None:
    # A half-written unit file would be loaded as-is by a concurrent daemon-reload.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(content)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
