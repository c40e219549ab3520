"""``agent-telemetry service install|uninstall`` for systemd (Linux) and launchd (macOS).

Install reads what the service must share with the user's shell (the executable, the
variables that move the daemon's files, the environment file, the upload interval), plans
the steps, checks what would make it refuse, and only then carries the plan out. A dry run
does all of that but the last step, so it refuses exactly when a real install would.
Every path is computed from a ``home`` argument and every command goes through a ``run``
callable, so tests point both at a temporary home and a fake ``systemctl``/``launchctl``.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Mapping
from pathlib import Path

from agent_telemetry._paths import open_regular
from agent_telemetryd.lock import running_pid
from agent_telemetryd.paths import resolve_paths
from agent_telemetryd.service import envfile
from agent_telemetryd.service.layout import (
    Platform,
    ServiceError,
    current_platform,
    log_dir,
    managed_files,
    service_dir,
)
from agent_telemetryd.service.manager import (
    ALL_SYSTEMD_UNITS,
    LAUNCHD_LABELS,
    STARTED_UNITS,
    Runner,
    check_manager,
    run_command,
)
from agent_telemetryd.service.plan import Plan, Step, execute, folder
from agent_telemetryd.service.render import (
    FLUSH_PLIST_NAME,
    FLUSH_TIMER,
    HTTP_SOCKET_UNIT,
    PLIST_NAME,
    SERVICE_UNIT,
    UnitSettings,
    render_flush_plist,
    render_launchd_plist,
    systemd_units,
)
from agent_telemetryd.service.settings import (
    CARRIED_VARIABLES,
    config_refusal,
    human_interval,
    unit_settings,
)

__all__ = [
    "CARRIED_VARIABLES",
    "Plan",
    "Step",
    "find_executable",
    "install",
    "outdated_files",
    "plan_install",
    "plan_uninstall",
    "uninstall",
    "unit_settings",
]

EXECUTABLE_NAME = "agent-telemetry"


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
    settings: UnitSettings,
    *,
    uid: int | None = None,
    environ: Mapping[str, str] | None = None,
    shell_environ: Mapping[str, str] | None = None,
) -> Plan:
    """The steps that write the service definitions and the environment file, then enable
    and start the service. ``environ`` only places the unit folder (``XDG_CONFIG_HOME``);
    ``shell_environ`` is where keys to copy into a new environment file come from."""
    uid = os.getuid() if uid is None else uid
    target = service_dir(home, platform, environ)
    steps: list[Step] = [folder(target)]
    steps += _env_file_steps(settings.env_file, platform, shell_environ or {})
    notes = [*_env_file_notes(settings.env_file, platform, shell_environ or {})]
    if platform == "darwin":
        domain = f"gui/{uid}"
        assert settings.log_dir is not None
        steps.append(folder(settings.log_dir))
        if settings.runtime_dir is not None:
            # launchd binds the sockets in it at bootstrap (and at each login): it must
            # already be the user's own 0700 folder, or the daemon and the shims would
            # refuse it and look elsewhere.
            steps.append(folder(settings.runtime_dir, 0o700))
        plists = ((PLIST_NAME, render_launchd_plist), (FLUSH_PLIST_NAME, render_flush_plist))
        steps += [Step("write", path=target / name, content=r(settings)) for name, r in plists]
        for label, (name, _) in zip(LAUNCHD_LABELS, plists, strict=True):
            steps += [
                # A loaded copy keeps running the old definition; unload it first. Fails
                # harmlessly ("No such process") on a first install.
                Step("run", argv=("launchctl", "bootout", f"{domain}/{label}"), may_fail=True),
                # A past `launchctl disable` outlives bootout and would make bootstrap fail.
                Step("run", argv=("launchctl", "enable", f"{domain}/{label}")),
                Step("run", argv=("launchctl", "bootstrap", domain, str(target / name))),
            ]
        if settings.runtime_dir is not None:
            held = [f"{settings.runtime_dir}/ingest.sock", "api.sock"]
            if settings.http_listen is not None:
                held.append("{}:{}".format(*settings.http_listen))
            notes.append(
                f"sockets: launchd holds {', '.join(held)} and starts the daemon on the "
                "first connection"
            )
        notes += [
            f"uploads: dev.agent-telemetry.flush runs `agent-telemetry flush` every "
            f"{human_interval(settings.upload_interval)} (it starts a stopped daemon)",
            f"logs: {settings.log_dir}/daemon.log, {settings.log_dir}/flush.log",
        ]
        notes += ["undo with: agent-telemetry service uninstall"]
        return Plan("install", platform, tuple(steps), tuple(notes))

    units = systemd_units(settings)
    http_file = target / HTTP_SOCKET_UNIT
    steps += [Step("write", path=target / name, content=text) for name, text in units.items()]
    if HTTP_SOCKET_UNIT not in units and http_file.exists():
        # TCP off now: an earlier install's port unit would go on listening, and starting
        # the daemon for any connection to a port the config says nothing about. Stopped
        # and disabled while its file is there (disable reads its [Install] section), and
        # cleared of a failed state (a taken port), so that after the reload below it is
        # gone from the manager too, not listed as "not-found failed".
        steps += [
            Step("run", argv=("systemctl", "--user", *args, HTTP_SOCKET_UNIT), may_fail=True)
            for args in (("disable", "--now"), ("reset-failed",))
        ]
        steps.append(Step("remove", path=http_file))
    steps.append(Step("run", argv=("systemctl", "--user", "daemon-reload")))
    # A socket unit keeps the fds it has bound across daemon-reload: one whose address
    # changed listens on the old port until stopped. Stopped here (it refuses to start
    # while the service runs); the service's start or restart below starts it again on the
    # new port and hands the daemon that one. Allowed to fail: it may not be loaded.
    http_moved = HTTP_SOCKET_UNIT in units and _differs(http_file, units[HTTP_SOCKET_UNIT])
    if http_moved:
        steps.append(
            Step("run", argv=("systemctl", "--user", "stop", HTTP_SOCKET_UNIT), may_fail=True)
        )
    steps.append(Step("run", argv=("systemctl", "--user", "enable", "--now", *STARTED_UNITS)))
    if HTTP_SOCKET_UNIT in units:
        # Enabled only: it listens from the next login on; today the service's start
        # (above, or the try-restart below) starts it first, and a taken port fails it alone.
        steps.append(Step("run", argv=("systemctl", "--user", "enable", HTTP_SOCKET_UNIT)))
    # `enable --now` leaves a running daemon on the old definition (say, an executable path
    # from before an upgrade, or the fd of a port that moved or was turned off) and a
    # running timer on the old interval; restart what changed, or do nothing if it is
    # stopped.
    changed = [n for n in (SERVICE_UNIT, FLUSH_TIMER) if _differs(target / n, units[n])]
    if http_moved and SERVICE_UNIT not in changed:
        changed.insert(0, SERVICE_UNIT)
    if changed:
        steps.append(Step("run", argv=("systemctl", "--user", "try-restart", *changed)))
    notes += [
        f"uploads: agent-telemetry-flush.timer runs `agent-telemetry flush` every "
        f"{human_interval(settings.upload_interval)} (it starts a stopped daemon)",
        "logs: journalctl --user -u agent-telemetry -u agent-telemetry-flush",
        "undo with: agent-telemetry service uninstall",
    ]
    return Plan("install", platform, tuple(steps), tuple(notes))


def plan_uninstall(
    home: Path,
    platform: Platform,
    *,
    uid: int | None = None,
    environ: Mapping[str, str] | None = None,
    env_file: Path | None = None,
) -> Plan:
    """The steps that stop and disable the service and remove exactly what install wrote.

    The environment file goes too if it is still as install created it (no keys in it);
    with the user's keys in it, it is kept and the notes say so.
    """
    uid = os.getuid() if uid is None else uid
    present = [p for p in managed_files(home, platform, environ) if p.exists()]
    notes: list[str] = []
    pristine = env_file is not None and _read(env_file) == envfile.render_env_file(platform)
    if env_file is not None and env_file.exists() and not pristine:
        notes.append(f"kept: {env_file} (your settings for the service)")
    removals = [Step("remove", path=p) for p in present]
    if pristine and env_file is not None:
        removals.append(Step("remove", path=env_file))
    if not present:
        notes.insert(0, "not installed: nothing to remove")
        return Plan("uninstall", platform, tuple(removals), tuple(notes))
    steps: list[Step] = []
    if platform == "darwin":
        steps += [
            Step("run", argv=("launchctl", "bootout", f"gui/{uid}/{label}"), may_fail=True)
            for label in LAUNCHD_LABELS
        ]
        steps += removals
        notes.append(f"logs are kept in {log_dir(home)}")
        return Plan("uninstall", platform, tuple(steps), tuple(notes))

    units = tuple(name for name in ALL_SYSTEMD_UNITS if any(p.name == name for p in present))
    # Only units that exist: one unknown name makes systemctl refuse the whole command.
    steps.append(
        Step("run", argv=("systemctl", "--user", "disable", "--now", *units), may_fail=True)
    )
    steps += removals
    steps += [
        Step("run", argv=("systemctl", "--user", "daemon-reload"), may_fail=True),
        # A unit that once failed stays listed as "not-found failed" until reset.
        Step("run", argv=("systemctl", "--user", "reset-failed", *units), may_fail=True),
    ]
    notes.append("kept: the event buffer, the config and the journal's logs")
    return Plan("uninstall", platform, tuple(steps), tuple(notes))


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
    """Write the service definitions for this platform, enable them and start the service.

    ``home=None`` means the real home (and honours ``XDG_CONFIG_HOME``). Both a dry run and
    a real one check the manager and the environment file; a real one raises
    :class:`ServiceError` with every reason, a dry run returns them in ``Plan.refusals``.
    """
    platform = current_platform() if platform is None else platform
    plan, settings = _planned(home, platform, executable, environ, uid)
    refusals = tuple(_refusals(platform, settings, environ, run, uid))
    if dry_run:
        return Plan(plan.action, plan.platform, plan.steps, plan.notes, True, refusals)
    if refusals:
        raise ServiceError("; ".join(refusals))
    return execute(plan, run)


def _planned(
    home: Path | None,
    platform: Platform,
    executable: Path | None,
    environ: Mapping[str, str],
    uid: int | None,
) -> tuple[Plan, UnitSettings]:
    """What install would do (its notes first), and the settings it writes."""
    executable = find_executable() if executable is None else _existing_executable(executable)
    real_home, env_for_paths = _home(home, environ)
    settings, notes = unit_settings(executable, platform, real_home, environ)
    plan = plan_install(
        real_home, platform, settings, uid=uid, environ=env_for_paths, shell_environ=environ
    )
    return Plan(plan.action, plan.platform, plan.steps, (*notes, *plan.notes)), settings


def outdated_files(
    *,
    home: Path | None = None,
    platform: Platform | None = None,
    environ: Mapping[str, str] = os.environ,
    uid: int | None = None,
) -> list[str]:
    """The service definitions that are installed but not as ``service install`` writes them
    now, and those missing beside them; empty when none is installed.

    After an upgrade the manager keeps running what an older install wrote: a unit without
    a reload command, a flush timer that counts a held upload as a failure, or no timer at
    all; an executable path, upload interval or loopback address changed since counts too,
    and so does a unit install would now remove. Install writes them again (and restarts
    what changed)."""
    platform = current_platform() if platform is None else platform
    real_home, env_for_paths = _home(home, environ)
    managed = managed_files(real_home, platform, env_for_paths)
    if not any(path.exists() for path in managed):
        return []
    try:
        # Not a dry run of install: its refusals (the manager asked again, the config
        # read again) say nothing of the files.
        plan, _ = _planned(home, platform, None, environ, uid)
    except ServiceError:
        return []  # no executable to write into them: nothing to compare with
    written = {step.path: step.content for step in plan.steps if step.kind == "write"}
    # A unit install no longer writes (the HTTP port's, with the port turned off) is out
    # of date too: install removes it.
    return [
        str(path)
        for path in managed
        if (_read(path) != written[path] if path in written else path.exists())
    ]


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
    env_file = envfile.env_file_path(resolve_paths(environ, platform).config_file)
    plan = plan_uninstall(real_home, platform, uid=uid, environ=env_for_paths, env_file=env_file)
    if dry_run:
        return Plan(plan.action, plan.platform, plan.steps, plan.notes, dry_run=True)
    return execute(plan, run)


def _refusals(
    platform: Platform,
    settings: UnitSettings,
    environ: Mapping[str, str],
    run: Runner,
    uid: int | None,
) -> list[str]:
    """Every reason install would stop before writing anything."""
    problems: list[str] = []
    try:
        check_manager(platform, environ=environ, run=run, uid=uid)
    except ServiceError as exc:
        problems.append(str(exc))
    by_hand = _daemon_by_hand(environ, platform)
    if by_hand is not None:
        problems.append(by_hand)
    refused_config = config_refusal(environ, platform)
    if refused_config is not None:
        problems.append(refused_config)
    exposed = envfile.exposure(settings.env_file)
    if exposed is not None:
        problems.append(exposed)
    try:
        envfile.parse_env_text(_read(settings.env_file) or "", str(settings.env_file))
    except envfile.EnvFileError as exc:
        problems.append(str(exc))
    return problems


def _daemon_by_hand(environ: Mapping[str, str], platform: Platform) -> str | None:
    """A daemon not run by the service holds the lock: the service's daemon could not start
    beside it (one per user), and on Linux the socket unit would take its socket files."""
    pid = running_pid(resolve_paths(environ, platform).lock_file)
    if pid is None or platform != "linux" or _in_service_unit(pid):
        return None  # launchd's own jobs are not told apart here: no refusal on a guess
    return (
        f"a daemon started by hand is running (pid {pid}); the service's daemon cannot "
        f"start beside it: stop that one first (Ctrl-C in its terminal, or kill {pid}), "
        "then install again"
    )


def _in_service_unit(pid: int) -> bool:
    """Whether `pid` runs in the service's unit (a re-install while the service runs)."""
    try:
        cgroup = Path(f"/proc/{pid}/cgroup").read_text()
    except OSError:
        return True  # unknown: do not refuse on a guess
    return f"/{SERVICE_UNIT}" in cgroup


def _env_file_steps(path: Path, platform: Platform, shell: Mapping[str, str]) -> list[Step]:
    if path.exists():
        return []
    text = envfile.render_env_file(platform, envfile.variables_from(shell))
    return [
        # The config folder is private too: it will hold the config and the consent file.
        folder(path.parent, 0o700),
        Step("write", path=path, content=text, mode=0o600, shown=envfile.masked(text)),
    ]


def _env_file_notes(path: Path, platform: Platform, shell: Mapping[str, str]) -> list[str]:
    """Where the service's keys go, and which keys in this shell the service won't see."""
    restart = envfile.restart_hint(platform)
    if not path.exists():
        copied = list(envfile.variables_from(shell))
        if copied:
            return [
                f"keys for the service: {path} (private; copied from this shell: "
                f"{', '.join(copied)})"
            ]
        return [f"keys for the service go in {path} (NAME=value lines); then run: {restart}"]
    try:
        present = envfile.parse_env_text(_read(path) or "", str(path))
    except envfile.EnvFileError:
        return []
    missing = [name for name in envfile.variables_from(shell) if name not in present]
    if not missing:
        return [f"keys for the service: {path}"]
    return [
        f"{', '.join(missing)} set in this shell but not in {path}: the service does not "
        f"see {'it' if len(missing) == 1 else 'them'}; add there, then run: {restart}"
    ]


def _home(home: Path | None, environ: Mapping[str, str]) -> tuple[Path, Mapping[str, str] | None]:
    if home is None:
        return Path.home(), environ
    return home, None


def _existing_executable(path: Path) -> Path:
    absolute = Path(os.path.abspath(path))
    if not (absolute.is_file() and os.access(absolute, os.X_OK)):
        raise ServiceError(f"executable {absolute} does not exist or is not executable")
    return absolute


def _differs(path: Path, text: str) -> bool:
    return path.exists() and _read(path) != text


def _read(path: Path) -> str | None:
    # open_regular: a named pipe beside the config would hold install in open() for good.
    try:
        with open_regular(path, "r", encoding="utf-8") as handle:
            return handle.read()
    except (OSError, UnicodeDecodeError):
        return None
