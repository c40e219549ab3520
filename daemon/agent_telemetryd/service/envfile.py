"""The service's private environment file: where a daemon run as a service gets its API keys.

A key exported in a login shell never reaches a user service, and a key written into a unit
file or plist is readable by anyone. So the keys live in ``service.env`` beside the config
file, 0600, one ``NAME=value`` a line. systemd reads it itself (``EnvironmentFile=-…``);
launchd has nothing like it, so the LaunchAgent passes it to ``agent-telemetry --env-file``,
which reads the same format with :func:`load_env_file`.

Only the standard library here: the config module imports :func:`key_places` for its errors.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Mapping, MutableMapping
from pathlib import Path
from typing import Literal

from agent_telemetry._paths import open_regular
from agent_telemetryd.config_safety import others_can_change

__all__ = [
    "ENV_FILE_NAME",
    "SENDER_VARIABLES",
    "EnvFileError",
    "backend_setup_hint",
    "env_file_path",
    "exposure",
    "key_places",
    "load_env_file",
    "masked",
    "parse_env_text",
    "render_env_file",
    "restart_hint",
    "variables_from",
]

ENV_FILE_NAME = "service.env"

# Settings a user typically exports in a shell for the sender, where a service never sees
# them: `service install` copies the ones set in its own environment into a new file.
SENDER_VARIABLES = (
    "AGENT_TELEMETRY_SENDER",
    "POSTHOG_API_KEY",
    "POSTHOG_HOST",
    "POSTHOG_PERSONAL_API_KEY",
    "POSTHOG_PROJECT_ID",
    "TELEMETRY_ENDPOINT",
    "TELEMETRY_API_KEY",
)
# Shown as a length only, in a dry run's output and in its JSON.
SECRET_VARIABLES = frozenset({"POSTHOG_API_KEY", "POSTHOG_PERSONAL_API_KEY", "TELEMETRY_API_KEY"})

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Characters after which an unquoted value would read back differently.
_NEEDS_QUOTES = re.compile(r"[\s\"'\\#;$`]")


class EnvFileError(ValueError):
    """A line of the environment file is not ``NAME=value``; the message names the line."""


def env_file_path(config_file: Path) -> Path:
    """``service.env`` beside the config file (so ``AGENT_TELEMETRY_HOME`` moves it too)."""
    return config_file.parent / ENV_FILE_NAME


def restart_hint(platform: str) -> str:
    """The command that makes a running service read its environment file again."""
    if platform == "darwin":
        return "launchctl kickstart -k gui/$(id -u)/dev.agent-telemetry.daemon"
    return "systemctl --user restart agent-telemetry.service"


def key_places(config_file: Path, variable: str, toml_key: str) -> str:
    """Where the daemon reads one setting from, for an error that says a key is missing."""
    return (
        f"the daemon reads it from {toml_key} in {config_file} (chmod 600), "
        f"from {variable}=… in {env_file_path(config_file)} when it runs as a service "
        f"(then restart it), or from {variable} in the environment of the shell that runs "
        "`agent-telemetry daemon`"
    )


def backend_setup_hint(config_file: Path, platform: str) -> str:
    """What `enable` says when no backend is configured: which keys, and every place the
    daemon reads them from (a key in the shell that runs `enable` reaches no service)."""
    env_file = env_file_path(config_file)
    return "\n".join(
        [
            "No backend is configured, so nothing is sent yet. Give the daemon "
            "POSTHOG_API_KEY (PostHog), or TELEMETRY_ENDPOINT and TELEMETRY_API_KEY (your own "
            "backend; see README, Uploading), in one of the places it reads them from:",
            f"  - {env_file}, NAME=value lines, when it runs as a service; "
            f"then: {restart_hint(platform)}",
            f"  - {config_file}: [posthog] api_key, or [http] endpoint and api_key "
            "(chmod 600); then restart the daemon",
            "  - the environment of the shell that runs `agent-telemetry daemon`",
        ]
    )


def parse_env_text(text: str, source: str = "environment file") -> dict[str, str]:
    """``NAME=value`` lines as systemd's ``EnvironmentFile=`` reads them, for the common cases.

    Blank lines and lines starting with ``#`` or ``;`` are comments. A value may be wrapped
    in single quotes (taken literally) or double quotes (``\\"`` and ``\\\\`` escaped);
    an unquoted value is stripped of surrounding blanks. Raises :class:`EnvFileError` naming
    the first line that is none of these.
    """
    values: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        name, equals, value = line.partition("=")
        name = name.strip()
        if not equals or not _NAME.match(name):
            raise EnvFileError(f"{source}, line {number}: expected NAME=value")
        values[name] = _unquote(value.strip(), source, number)
    return values


def load_env_file(path: Path, environ: MutableMapping[str, str]) -> list[str]:
    """Set the file's variables in ``environ`` (they win, as with systemd); return their names.

    A missing file is not an error (``EnvironmentFile=-``); one that others may read is
    when it holds a key (its secret is out already, and using it would hide that). Settings
    that are no secret (``AGENT_TELEMETRY_MODE=off``) may be in a file anyone can read. One
    that someone else could change is not used at all: ``AGENT_TELEMETRY_MODE=upload``, an
    endpoint of theirs on this machine's loopback and ``AGENT_TELEMETRY_CAPTURE_CONTENT=1``
    in it would send them the user's prompts (as with the config file: config_safety.py).
    A named pipe or a device is refused before it is read (open_regular), since reading
    one could wait for good.
    """
    try:
        with open_regular(path, "r", encoding="utf-8") as handle:
            others = others_can_change(os.fstat(handle.fileno()), os.getuid())
            text = handle.read()
    except FileNotFoundError:
        return []
    except (OSError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) else "not UTF-8 text"
        raise EnvFileError(f"cannot read {path}: {reason}") from None
    if others is not None:
        raise EnvFileError(
            f"{path} {others}, so its settings (where events go, whether they are sent) "
            f"are not yours alone; make it a file of your own that only you can change "
            f"(chmod 600 {path})"
        )
    values = parse_env_text(text, str(path))
    secrets = [name for name in values if name in SECRET_VARIABLES and values[name]]
    problem = exposure(path, holds=secrets) if secrets else None
    if problem is not None:
        raise EnvFileError(problem)
    environ.update(values)
    return list(values)


def exposure(path: Path, holds: list[str] | None = None) -> str | None:
    """Why ``path`` is not private enough for keys (with the fix), or None when it is.
    ``holds`` names the keys found in it; without it, the file is the service's own."""
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        return None
    if mode & 0o077:
        what = ", ".join(holds) if holds else "the service's keys"
        return f"{path} holds {what} but others may read it (mode {mode:o}); run: chmod 600 {path}"
    return None


def render_env_file(
    platform: Literal["linux", "darwin"], values: Mapping[str, str] | None = None
) -> str:
    """A new environment file: what it is for, examples, then ``values`` (may be empty)."""
    lines = [
        "# Settings for the agent-telemetry service: one NAME=value a line, for example",
        "#   POSTHOG_API_KEY=phc_...",
        "# or, for your own backend,",
        "#   TELEMETRY_ENDPOINT=https://telemetry.example.com",
        "#   TELEMETRY_API_KEY=...",
        "# A key exported in your shell does not reach the service; this file does. Keep it",
        "# private (chmod 600). After a change, restart the service:",
        f"#   {restart_hint(platform)}",
    ]
    lines += [f"{name}={_quote(value)}" for name, value in (values or {}).items()]
    return "\n".join(lines) + "\n"


def masked(text: str) -> str:
    """``text`` (an environment file) with the secret values replaced by their length."""
    shown = []
    for line in text.splitlines():
        name, equals, value = line.partition("=")
        if equals and name in SECRET_VARIABLES:
            line = f"{name}=<hidden: {len(value)} characters>"
        shown.append(line)
    return "\n".join(shown) + ("\n" if text.endswith("\n") else "")


def variables_from(environ: Mapping[str, str]) -> dict[str, str]:
    """The sender settings present (and not blank) in ``environ``, in a stable order."""
    return {name: environ[name] for name in SENDER_VARIABLES if environ.get(name, "").strip()}


def _quote(value: str) -> str:
    if not _NEEDS_QUOTES.search(value):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _unquote(value: str, source: str, number: int) -> str:
    if len(value) >= 2 and value[0] == value[-1] == "'":
        return value[1:-1]
    if len(value) >= 2 and value[0] == value[-1] == '"':
        inner, out, index = value[1:-1], [], 0
        while index < len(inner):
            char = inner[index]
            if char == "\\" and index + 1 < len(inner):
                index += 1
                char = inner[index]
            out.append(char)
            index += 1
        return "".join(out)
    if value[:1] in ("'", '"'):
        raise EnvFileError(f"{source}, line {number}: unterminated quote")
    return value
