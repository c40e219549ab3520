"""What ``service install`` writes into the service definitions for this user.

Read from the same environment and config the shell's CLI uses, so the service runs with
the files, the socket folder, the upload interval and the loopback port the user sees.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from agent_telemetry._paths import open_regular
from agent_telemetryd.paths import Paths, resolve_paths
from agent_telemetryd.service import envfile
from agent_telemetryd.service.layout import Platform, log_dir
from agent_telemetryd.service.render import UnitSettings

if TYPE_CHECKING:
    from agent_telemetryd.config import Config

__all__ = [
    "CARRIED_VARIABLES",
    "RUNTIME_VARIABLES",
    "config_refusal",
    "human_interval",
    "service_http_listen",
    "unit_settings",
]

# Variables that decide where the daemon keeps its config, buffer and sockets: the
# service must run with the same ones as the shell, or the CLI and the daemon would each
# use their own files.
CARRIED_VARIABLES = ("AGENT_TELEMETRY_HOME", "AGENT_TELEMETRY_CONFIG")
# On macOS the runtime folder follows these (docs/architecture.md), and a LaunchAgent's
# environment has neither of the shell's: carried, the daemon finds the very folder whose
# sockets launchd holds, as the shims and the CLI do.
RUNTIME_VARIABLES = ("TMPDIR", "XDG_RUNTIME_DIR")
DEFAULT_UPLOAD_INTERVAL = 3600.0
DEFAULT_HTTP_LISTEN = ("127.0.0.1", 7468)


def unit_settings(
    executable: Path, platform: Platform, home: Path, environ: Mapping[str, str]
) -> tuple[UnitSettings, list[str]]:
    """What goes into the service definitions for this user, and notes for the user."""
    paths = resolve_paths(environ, platform)
    env_file = envfile.env_file_path(paths.config_file)
    carried = {
        name: str(Path(environ[name]).expanduser().absolute())
        for name in CARRIED_VARIABLES
        if environ.get(name, "").strip()
    }
    runtime: Path | None = None
    if platform == "linux":
        xdg_runtime = environ.get("XDG_RUNTIME_DIR", "")
        default = Path(xdg_runtime) / "agent-telemetry" if xdg_runtime else None
        runtime = None if paths.runtime_dir == default else paths.runtime_dir
    else:
        # launchd expands no variables: the LaunchAgent names the folder itself.
        runtime = paths.runtime_dir
        carried.update({name: environ[name] for name in RUNTIME_VARIABLES if environ.get(name)})
    config, notes = _service_config(environ, env_file, paths)
    interval = DEFAULT_UPLOAD_INTERVAL if config is None else config.upload_interval
    settings = UnitSettings(
        executable=executable,
        env_file=env_file,
        environment=carried,
        runtime_dir=runtime,
        upload_interval=interval,
        log_dir=log_dir(home) if platform == "darwin" else None,
        http_listen=_http_listen(config),
    )
    return settings, [*notes, _idle_exit_note(config)]


def service_http_listen(environ: Mapping[str, str], platform: Platform) -> tuple[str, int] | None:
    """The loopback address ``service install`` has the service manager listen on now
    (None: no TCP socket), as :func:`unit_settings` works it out, without an executable."""
    paths = resolve_paths(environ, platform)
    config, _ = _service_config(environ, envfile.env_file_path(paths.config_file), paths)
    return _http_listen(config)


def _http_listen(config: Config | None) -> tuple[str, int] | None:
    """The config's loopback address for the service manager to listen on, or None.

    Without a usable config (install refuses it, or a dry run shows the files anyway) the
    daemon's default. ``off`` has nothing listen; port 0 (any free port) is the daemon's
    to pick, so it binds TCP itself and the manager holds none."""
    if config is None:
        return DEFAULT_HTTP_LISTEN
    return (config.http_host, config.http_port) if config.http_port else None


def _service_config(
    environ: Mapping[str, str], env_file: Path, paths: Paths
) -> tuple[Config | None, list[str]]:
    """The config the service will run with: its file with the service's environment."""
    # Imported here: the config module pulls in the sender checks, which the other
    # service commands (status, uninstall) do not need.
    from agent_telemetryd.config import read_config
    from agent_telemetryd.config_problems import refused_by_the_daemon

    service_environ = dict(environ)
    try:
        service_environ.update(envfile.parse_env_text(_read(env_file) or "", str(env_file)))
    except envfile.EnvFileError:
        return None, []  # refused by install, naming the line (install._refusals)
    config, problems = read_config(service_environ, paths, check_permissions=False)
    if refused_by_the_daemon(problems):
        # Install refuses such a config, naming each problem (config_refusal); a dry run
        # still shows the files, with the default interval. Keys only a newer version
        # knows are no refusal: the daemon runs on the rest, and so do the units.
        return None, []
    return config, []


def _idle_exit_note(config: Config | None) -> str:
    """When the service's daemon ends itself, as the daemon will work it out."""
    from agent_telemetryd.idle import DEFAULT_IDLE_EXIT_SECONDS, idle_exit_seconds

    seconds = (
        DEFAULT_IDLE_EXIT_SECONDS
        if config is None
        else idle_exit_seconds(config, socket_activated=True)
    )
    if seconds is None:
        return "idle exit: off (the daemon keeps running; idle_exit or an OTLP port says so)"
    return (
        f"idle exit: after {human_interval(seconds)} with nothing to do the daemon exits "
        "(idle_exit); the next connection starts it again"
    )


def config_refusal(environ: Mapping[str, str], platform: Platform) -> str | None:
    """Why the service's daemon would not start with the config it will read, or None.

    The daemon refuses to start on any problem in its config (a typo, a bad value, a key
    others can read), so a service installed on one would fail at its first start and at
    every socket activation after it: install refuses instead, naming every problem."""
    from agent_telemetryd.config import read_config

    paths = resolve_paths(environ, platform)
    env_file = envfile.env_file_path(paths.config_file)
    try:
        service_environ = {
            **environ,
            **envfile.parse_env_text(_read(env_file) or "", str(env_file)),
        }
    except envfile.EnvFileError:
        return None  # refused on its own, naming the line
    from agent_telemetryd.config_problems import refused_by_the_daemon

    _, problems = read_config(service_environ, paths)
    problems = refused_by_the_daemon(problems)
    if not problems:
        return None
    listed = "; ".join(str(problem) for problem in problems)
    them = "it" if len(problems) == 1 else "them"
    return (
        f"the service's daemon would not start with this config ({listed}); fix {them}"
        " (agent-telemetry doctor shows each with the fix), then install again"
    )


def human_interval(seconds: float) -> str:
    for unit, size in (("h", 3600), ("min", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def _read(path: Path) -> str | None:
    # open_regular: a named pipe beside the config would hold install in open() for good.
    try:
        with open_regular(path, "r", encoding="utf-8") as handle:
            return handle.read()
    except (OSError, UnicodeDecodeError):
        return None
