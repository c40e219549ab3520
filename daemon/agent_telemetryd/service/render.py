"""The service definitions shipped as package data, and how install fills them in.

The files under ``templates/`` are the source of truth. The repository's top-level
``systemd/`` and ``launchd/`` folders hold byte-identical copies (a test keeps them so),
and both work as shipped for the common install: the executable that pipx or
``pip install --user`` puts in ``~/.local/bin``. ``service install`` starts from the same
text and swaps in what it knows: the executable actually installed, the private
environment file, variables that move the daemon's files, the socket folder and the
upload interval, the loopback HTTP address. Every line it replaces must be present exactly
once, so a template edit that loses one fails loudly instead of shipping a unit that
ignores the setting.
"""

from __future__ import annotations

import plistlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from agent_telemetryd.service.activation import SOCKET_NAMES, UNIX_SOCKET_FILES
from agent_telemetryd.service.launchd_sockets import LAUNCHD_SOCKETS_VARIABLE

__all__ = [
    "FLUSH_LABEL",
    "FLUSH_PLIST_NAME",
    "FLUSH_SERVICE",
    "FLUSH_TIMER",
    "HTTP_SOCKET_UNIT",
    "LAUNCHD_LABEL",
    "PLIST_NAME",
    "SERVICE_UNIT",
    "SOCKET_UNIT",
    "TEMPLATE_NAMES",
    "UnitSettings",
    "launchd_sockets",
    "render_flush_plist",
    "render_flush_service",
    "render_flush_timer",
    "render_http_socket",
    "render_launchd_plist",
    "render_systemd_service",
    "render_systemd_socket",
    "systemd_units",
    "template_text",
]

SERVICE_UNIT = "agent-telemetry.service"
SOCKET_UNIT = "agent-telemetry.socket"
# The loopback HTTP port, in a unit of its own: a taken port fails that unit alone.
HTTP_SOCKET_UNIT = "agent-telemetry-http.socket"
FLUSH_SERVICE = "agent-telemetry-flush.service"
FLUSH_TIMER = "agent-telemetry-flush.timer"
LAUNCHD_LABEL = "dev.agent-telemetry.daemon"
PLIST_NAME = f"{LAUNCHD_LABEL}.plist"
FLUSH_LABEL = "dev.agent-telemetry.flush"
FLUSH_PLIST_NAME = f"{FLUSH_LABEL}.plist"
SYSTEMD_TEMPLATES = (SOCKET_UNIT, HTTP_SOCKET_UNIT, SERVICE_UNIT, FLUSH_SERVICE, FLUSH_TIMER)
LAUNCHD_TEMPLATES = (PLIST_NAME, FLUSH_PLIST_NAME)
TEMPLATE_NAMES = SYSTEMD_TEMPLATES + LAUNCHD_TEMPLATES

# The socket files' mode: only the user may connect (plists have no octal: 0o600 is 384).
SOCKET_FILE_MODE = 0o600

# The lines of the shipped units that install replaces.
_SHIPPED_EXEC = "ExecStart=%h/.local/bin/agent-telemetry"
_SHIPPED_ENV_FILE = "EnvironmentFile=-%E/agent-telemetry/service.env"
_ENVIRONMENT_ANCHOR = "Environment=PYTHONUNBUFFERED=1"
_SHIPPED_RUNTIME = "ListenStream=%t/agent-telemetry/"
_SHIPPED_HTTP_LISTEN = "ListenStream=127.0.0.1:7468"
_SHIPPED_SOCKETS = f"Sockets={SOCKET_UNIT} {HTTP_SOCKET_UNIT}"
_TIMER_LINES = (
    "OnActiveSec=1h",
    "OnUnitActiveSec=1h",
    "AccuracySec=1min",
    "RandomizedDelaySec=5min",
)

# Characters that make systemd split or reinterpret an ExecStart= word.
_NEEDS_QUOTES = re.compile(r"[\s\"'\\;]")
# Past this, a later upload costs nothing and an earlier wake-up costs battery.
_MAX_ACCURACY_S = 60.0
_MAX_SPREAD_S = 300.0


@dataclass(frozen=True)
class UnitSettings:
    """What ``service install`` fills into the shipped definitions (all paths absolute).

    ``environment`` holds variables the service must share with the user's shell for both
    to find the same files (``AGENT_TELEMETRY_HOME``, ``AGENT_TELEMETRY_CONFIG``).
    ``runtime_dir`` is where the socket unit puts the sockets; None keeps systemd's own
    ``%t/agent-telemetry``, the daemon's default. launchd expands nothing, so the
    LaunchAgent holds the sockets only when it is given (None: the daemon binds its own).
    ``http_listen`` is the loopback address the service manager listens on for the daemon:
    the config's ``http_host``/``http_port``, so the port the CLI and the docs point
    exporters at is the one that is listened on. None (``http_port`` off, or 0, which only
    the daemon can pick) means no TCP socket: no HTTP entry in the LaunchAgent's
    ``Sockets``, no ``agent-telemetry-http.socket`` and no mention of it in the service.
    """

    executable: Path
    env_file: Path
    environment: Mapping[str, str] = field(default_factory=dict)
    runtime_dir: Path | None = None
    upload_interval: float = 3600.0
    log_dir: Path | None = None  # the LaunchAgents' log folder; unused by systemd
    http_listen: tuple[str, int] | None = ("127.0.0.1", 7468)

    def __post_init__(self) -> None:
        for name in ("executable", "env_file", "runtime_dir", "log_dir"):
            value = getattr(self, name)
            if value is not None and not Path(value).is_absolute():
                raise ValueError(f"service files need an absolute path, got {str(value)!r}")
        if self.upload_interval <= 0:
            raise ValueError("the upload interval must be greater than zero")
        if self.http_listen is not None and not 0 < self.http_listen[1] < 65536:
            # Port 0 would have the manager pick a port no config or CLI could name.
            raise ValueError(f"a listened-on port must be 1-65535, got {self.http_listen[1]}")


def template_text(name: str) -> str:
    """A definition as shipped (what ``systemd/`` and ``launchd/`` hold)."""
    if name not in TEMPLATE_NAMES:
        raise ValueError(f"unknown service template {name!r}")
    return resources.files(__package__).joinpath("templates", name).read_text(encoding="utf-8")


def systemd_units(settings: UnitSettings) -> dict[str, str]:
    """Every unit ``service install`` writes on Linux, by file name, in writing order.

    Without a loopback port (``http_listen`` None) there is no HTTP socket unit: one
    listening anyway would start the daemon for a port nobody is told about.
    """
    units = {SOCKET_UNIT: render_systemd_socket(settings)}
    if settings.http_listen is not None:
        units[HTTP_SOCKET_UNIT] = render_http_socket(settings)
    units[SERVICE_UNIT] = render_systemd_service(settings)
    units[FLUSH_SERVICE] = render_flush_service(settings)
    units[FLUSH_TIMER] = render_flush_timer(settings)
    return units


def render_systemd_service(settings: UnitSettings) -> str:
    """The daemon's unit: the real executable, environment file and carried variables, and
    the socket units it takes fds from (not the HTTP port's when there is none)."""
    text = _fill_command_unit(template_text(SERVICE_UNIT), settings, "daemon")
    if settings.http_listen is None:
        # A Sockets= entry for a unit that is not installed would make every start of the
        # service look for it (Wants=) and log it as not found.
        text = _swap_line(text, _SHIPPED_SOCKETS, [f"Sockets={SOCKET_UNIT}"], SERVICE_UNIT)
    return text


def render_flush_service(settings: UnitSettings) -> str:
    """The unit the timer starts: ``agent-telemetry flush`` with the daemon's own settings."""
    return _fill_command_unit(template_text(FLUSH_SERVICE), settings, "flush")


def render_systemd_socket(settings: UnitSettings) -> str:
    """The socket unit, listening where the daemon and the CLI will look for the sockets."""
    text = template_text(SOCKET_UNIT)
    if settings.runtime_dir is None:
        return text
    folder = _systemd_text(str(settings.runtime_dir))
    lines = text.splitlines(keepends=True)
    moved = [
        line.replace(_SHIPPED_RUNTIME, f"ListenStream={folder}/", 1)
        if line.startswith(_SHIPPED_RUNTIME)
        else line
        for line in lines
    ]
    if moved == lines:
        raise ValueError(f"{SOCKET_UNIT} template has no {_SHIPPED_RUNTIME} line")
    return "".join(moved)


def render_http_socket(settings: UnitSettings) -> str:
    """The loopback HTTP port's socket unit, listening on ``http_listen``.

    The daemon serves whatever port systemd passes it, while ``otel-env``, ``doctor`` and
    the docs read ``http_port`` from the config: the unit must say the same port, or
    exporters would be pointed where nothing listens. Raises ValueError without a port
    (such a unit is not installed: :func:`systemd_units`).
    """
    if settings.http_listen is None:
        raise ValueError(f"no {HTTP_SOCKET_UNIT} without a loopback port to listen on")
    host, port = settings.http_listen
    # systemd reads "[::1]:PORT" as IPv6; a bare "::1:PORT" would not parse as an address.
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return _swap_line(
        template_text(HTTP_SOCKET_UNIT),
        _SHIPPED_HTTP_LISTEN,
        [f"ListenStream={address}"],
        HTTP_SOCKET_UNIT,
    )


def render_flush_timer(settings: UnitSettings) -> str:
    """The timer at the upload interval, with a slack and spread to match it."""
    interval = settings.upload_interval
    slack = _timespan(min(_MAX_ACCURACY_S, interval / 10))
    spread = _timespan(min(_MAX_SPREAD_S, interval / 10))
    every = _timespan(interval)
    values = (f"OnActiveSec={every}", f"OnUnitActiveSec={every}")
    values += (f"AccuracySec={slack}", f"RandomizedDelaySec={spread}")
    text = template_text(FLUSH_TIMER)
    for shipped, filled in zip(_TIMER_LINES, values, strict=True):
        text = _swap_line(text, shipped, [filled], FLUSH_TIMER)
    return text


def render_launchd_plist(settings: UnitSettings) -> str:
    """The daemon's LaunchAgent, without the shipped shell: launchd runs the executable.

    With a runtime folder, launchd holds the sockets (``Sockets``) and starts the daemon
    when a connection arrives; the variable tells the daemon to ask launchd for them.
    """
    extra: dict[str, Any] = {}
    if settings.runtime_dir is not None:
        extra["Sockets"] = launchd_sockets(settings.runtime_dir, settings.http_listen)
        extra["EnvironmentVariables"] = {LAUNCHD_SOCKETS_VARIABLE: "1"}
    return _fill_plist(PLIST_NAME, settings, "daemon", extra)


def launchd_sockets(runtime_dir: Path, http: tuple[str, int] | None) -> dict[str, Any]:
    """The LaunchAgent's ``Sockets``: one entry per name the daemon asks launchd for."""
    sockets: dict[str, Any] = {
        name: {
            "SockType": "stream",
            "SockPathName": str(runtime_dir / UNIX_SOCKET_FILES[name]),
            # Only the user may connect, as for the sockets the daemon binds itself.
            "SockPathMode": SOCKET_FILE_MODE,
        }
        for name in SOCKET_NAMES
        if name in UNIX_SOCKET_FILES
    }
    if http is not None:
        host, port = http
        sockets["http"] = {
            "SockType": "stream",
            "SockNodeName": host,
            "SockServiceName": str(port),
            "SockFamily": "IPv6" if ":" in host else "IPv4",
        }
    return sockets


def render_flush_plist(settings: UnitSettings) -> str:
    """The upload LaunchAgent, every upload interval (whole seconds, at least one)."""
    interval = max(1, round(settings.upload_interval))
    return _fill_plist(FLUSH_PLIST_NAME, settings, "flush", {"StartInterval": interval})


def _fill_command_unit(text: str, settings: UnitSettings, command: str) -> str:
    name = f"{command} unit"
    exec_line = f"ExecStart={_systemd_exec_path(str(settings.executable))} {command}"
    text = _swap_line(text, f"{_SHIPPED_EXEC} {command}", [exec_line], name)
    text = _swap_line(
        text, _SHIPPED_ENV_FILE, [f"EnvironmentFile=-{_systemd_text(str(settings.env_file))}"], name
    )
    carried = [_environment_line(key, value) for key, value in settings.environment.items()]
    return _swap_line(text, _ENVIRONMENT_ANCHOR, [_ENVIRONMENT_ANCHOR, *carried], name)


def _fill_plist(template: str, settings: UnitSettings, command: str, extra: dict[str, Any]) -> str:
    if settings.log_dir is None:
        raise ValueError("a LaunchAgent needs a log folder")
    data = plistlib.loads(template_text(template).encode())
    data["ProgramArguments"] = [
        str(settings.executable),
        "--env-file",
        str(settings.env_file),
        command,
    ]
    log = str(settings.log_dir / f"{command}.log")
    data["StandardOutPath"] = log
    data["StandardErrorPath"] = log
    data["EnvironmentVariables"] = {
        **data["EnvironmentVariables"],
        **settings.environment,
        **extra.pop("EnvironmentVariables", {}),
    }
    data.update(extra)
    text = plistlib.dumps(data, sort_keys=False).decode()
    note = (
        "<!-- Written by `agent-telemetry service install` (docs/service.md); "
        "run it again rather than editing. -->\n"
    )
    return text.replace("<plist ", note + "<plist ", 1)


def _swap_line(text: str, old: str, new: list[str], name: str) -> str:
    lines = text.splitlines()
    matches = [index for index, line in enumerate(lines) if line == old]
    if len(matches) != 1:
        raise ValueError(f"{name} template must have the line {old!r} exactly once")
    index = matches[0]
    lines[index : index + 1] = new
    return "\n".join(lines) + "\n"


def _environment_line(key: str, value: str) -> str:
    # Quoted as one word: a path may hold blanks. `%` is a specifier everywhere.
    assignment = _systemd_text(f"{key}={value}").replace("\\", "\\\\").replace('"', '\\"')
    return f'Environment="{assignment}"'


def _systemd_text(text: str) -> str:
    """``text`` with ``%`` escaped, so systemd reads back exactly ``text``."""
    return text.replace("%", "%%")


def _systemd_exec_path(word: str) -> str:
    """The program word of ExecStart= that systemd reads back as exactly ``word``."""
    # %-specifiers are expanded everywhere, even within quotes. "$" needs no escape here:
    # systemd never substitutes variables in the program path, so "$$" would stay doubled.
    word = _systemd_text(word)
    if not _NEEDS_QUOTES.search(word):
        return word
    return '"' + word.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _timespan(seconds: float) -> str:
    """A systemd time span: whole seconds where exact, else milliseconds (at least 1)."""
    if seconds >= 1 and float(seconds).is_integer():
        return f"{int(seconds)}s"
    return f"{max(1, round(seconds * 1000))}ms"
