"""Whether the user turned telemetry off: the shim spools nothing then.

The daemon's precedence, as far as an agent can see it: `AGENT_TELEMETRY_DISABLED` (any value
but empty, 0, false, no, off), then `AGENT_TELEMETRY_MODE`, then the mode stored by
`agent-telemetry mode|enable|disable` (consent.json next to the config file), then `mode` in
config.toml, else `local`. The agent's environment may differ from the daemon's; the stored
choice and the config file are the same files the daemon reads. A stored choice that is
there but cannot be read counts as `off`, as the daemon counts it: it may have been off.
Neither file is read unless it is a regular file (open_regular): a named pipe in its place
would hold the agent in open() for good, and the shim must never hold an agent up.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Mapping
from pathlib import Path

from agent_telemetry._paths import config_file, consent_file, open_regular, others_file_problem
from agent_telemetry._settings import flag_set

MODES = ("off", "local", "upload")


def _mode(value: object) -> str | None:
    if not isinstance(value, str):
        return None
    mode = value.strip().lower()
    return mode if mode in MODES else None


def stored_mode(path: Path) -> str | None:
    """The mode a command stored; None when none was; `off` when the file is there but
    does not say one (unreadable, not JSON, no mode). A record someone else may have
    written counts only when it says `off`, as the daemon counts it."""
    others = None
    try:
        with open_regular(path) as handle:
            others = others_file_problem(os.fstat(handle.fileno()))
            data = json.load(handle)
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        if others is None:  # not opened: still, whose is it?
            with contextlib.suppress(OSError):
                others = others_file_problem(os.stat(path))
        return None if others is not None else "off"
    # The daemon takes the stored mode only as written by it: exactly one of the modes.
    mode = data.get("mode") if isinstance(data, dict) else None
    if others is not None:
        return "off" if mode == "off" else None
    return mode if mode in MODES else "off"


def configured_mode(path: Path) -> str | None:
    """`mode` in the config file, or None when absent, unreadable or not a mode."""
    import tomllib  # only when spooling: most agents never need it

    try:
        with open_regular(path) as handle:
            document = tomllib.load(handle)
    except (OSError, ValueError):  # tomllib.TOMLDecodeError is a ValueError
        return None
    return _mode(document.get("mode"))


def mode_is_off(environ: Mapping[str, str] | None = None) -> bool:
    """True when the user's choice, as this process can see it, is `off`."""
    env = os.environ if environ is None else environ
    try:
        if flag_set(env.get("AGENT_TELEMETRY_DISABLED", "")):
            return True
        from_env = _mode(env.get("AGENT_TELEMETRY_MODE"))
        if from_env is not None:
            return from_env == "off"
        stored = stored_mode(consent_file(env))
        if stored is not None:
            return stored == "off"
        return configured_mode(config_file(env)) == "off"
    except Exception:
        # No home to read the choice from: nothing is known to say off, and nothing says
        # where to spool either, so the spool refuses on its own.
        return False
