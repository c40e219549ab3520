"""What the environment says about this process's events: disabled or not, and its name."""

from __future__ import annotations

import os
import sys

from agent_telemetry._wire import MAX_AGENT_NAME

_FLAG_UNSET = frozenset(("", "0", "false", "no", "off"))


def flag_set(value: str) -> bool:
    """The daemon's reading of a flag: set, and not 0/false/no/off.

    One rule for `AGENT_TELEMETRY_DISABLED` everywhere: a value that turned the shim into a
    no-op in one place and not in another would deliver events from an agent the user
    meant to silence, or count them as refused while a daemon was taking them.
    """
    return value.strip().lower() not in _FLAG_UNSET


def env_disabled() -> bool:
    """True when `AGENT_TELEMETRY_DISABLED` is set to anything but 0/false/no/off."""
    return flag_set(os.environ.get("AGENT_TELEMETRY_DISABLED", ""))


def env_do_not_track() -> bool:
    """True when `DO_NOT_TRACK` is set (not 0/false/no/off) where the agent runs: its events
    are then sent as `local_only`, kept for the user and never uploaded, whatever the
    daemon's own environment says."""
    return flag_set(os.environ.get("DO_NOT_TRACK", ""))


def clean_agent(name: str) -> str:
    """`name` without control characters, cut to what the daemon accepts."""
    name = "".join(ch for ch in name if ch >= " " and ch != "\x7f")
    return name[:MAX_AGENT_NAME]


def default_agent() -> str:
    """`AGENT_TELEMETRY_AGENT`, else the program's name (`python -m pkg` gives `pkg`)."""
    name = clean_agent(os.environ.get("AGENT_TELEMETRY_AGENT", ""))
    if name:
        return name
    argv = getattr(sys, "argv", None) or [""]
    path = argv[0] or ""
    name = os.path.basename(path)
    if name.endswith(".py"):
        name = name[:-3]
    if name == "__main__":
        name = os.path.basename(os.path.dirname(path))
    if name in ("", "-c", "-m"):
        name = "python"
    return clean_agent(name) or "python"
