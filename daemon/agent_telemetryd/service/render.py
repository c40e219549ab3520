"""The service definitions shipped as package data, and how they are filled in.

The files under ``templates/`` are the source of truth. The repository's top-level
``systemd/`` and ``launchd/`` folders hold byte-identical copies for people who read or
package the project without installing it; a test keeps the two in step.
"""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path
from xml.sax.saxutils import escape as xml_escape

__all__ = [
    "LAUNCHD_LABEL",
    "PLIST_NAME",
    "SERVICE_UNIT",
    "SOCKET_UNIT",
    "TEMPLATE_NAMES",
    "render_launchd_plist",
    "render_systemd_service",
    "render_systemd_socket",
    "template_text",
]

SERVICE_UNIT = "agent-telemetry.service"
SOCKET_UNIT = "agent-telemetry.socket"
LAUNCHD_LABEL = "dev.agent-telemetry.daemon"
PLIST_NAME = f"{LAUNCHD_LABEL}.plist"
TEMPLATE_NAMES = (SERVICE_UNIT, SOCKET_UNIT, PLIST_NAME)

_EXEC = "@EXEC@"
_LOG_DIR = "@LOG_DIR@"

# Characters that make systemd split or reinterpret an ExecStart= word.
_NEEDS_QUOTES = re.compile(r"[\s\"'\\;]")


def template_text(name: str) -> str:
    """The raw template as shipped, placeholders included."""
    if name not in TEMPLATE_NAMES:
        raise ValueError(f"unknown service template {name!r}")
    return resources.files(__package__).joinpath("templates", name).read_text(encoding="utf-8")


def render_systemd_service(executable: Path) -> str:
    """The user unit with ``ExecStart=`` pointing at ``executable`` (absolute)."""
    return template_text(SERVICE_UNIT).replace(_EXEC, _systemd_exec_path(_absolute(executable)))


def render_systemd_socket() -> str:
    """The socket unit; it has nothing to fill in, ``%t`` is expanded by systemd."""
    return template_text(SOCKET_UNIT)


def render_launchd_plist(executable: Path, log_dir: Path) -> str:
    """The LaunchAgent plist running ``executable``, logging under ``log_dir`` (both absolute)."""
    return (
        template_text(PLIST_NAME)
        .replace(_EXEC, xml_escape(_absolute(executable)))
        .replace(_LOG_DIR, xml_escape(_absolute(log_dir)))
    )


def _absolute(path: Path) -> str:
    if not path.is_absolute():
        raise ValueError(f"service files need an absolute path, got {str(path)!r}")
    return str(path)


def _systemd_exec_path(word: str) -> str:
    """The program word of ExecStart= that systemd reads back as exactly ``word``."""
    # %-specifiers are expanded everywhere, even within quotes. "$" needs no escape here:
    # systemd never substitutes variables in the program path, so "$$" would stay doubled.
    word = word.replace("%", "%%")
    if not _NEEDS_QUOTES.search(word):
        return word
    return '"' + word.replace("\\", "\\\\").replace('"', '\\"') + '"'
