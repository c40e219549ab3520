"""Consent: three modes, when each took effect, and what decided it.

Order of precedence, first match wins:
  AGENT_TELEMETRY_DISABLED=1 → off; AGENT_TELEMETRY_MODE; the mode stored by
  `agent-telemetry mode|enable|disable`; `mode` in the config file; default `local`.
Then caps that only ever lower it: DO_NOT_TRACK=1 → at most local; CI set → at most
local unless AGENT_TELEMETRY_MODE=upload was given explicitly.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from agent_telemetryd.config import MODES, Config, Mode

POLICY_VERSION = 1
DEFAULT_MODE = Mode.LOCAL
_HISTORY_LIMIT = 100


@dataclass(frozen=True)
class ConsentState:
    mode: str
    source: str  # env, command, config, default, DO_NOT_TRACK, AGENT_TELEMETRY_DISABLED, CI
    reason: str
    since: str | None = None
    policy_version: int = POLICY_VERSION

    @property
    def uploads(self) -> bool:
        return self.mode == Mode.UPLOAD

    @property
    def keeps(self) -> bool:
        return self.mode != Mode.OFF


@dataclass(frozen=True)
class StoredConsent:
    mode: str
    since: str
    policy_version: int
    history: tuple[dict[str, Any], ...]


def read_stored(path: Path) -> StoredConsent | None:
    """The mode last set by a command; None when never set or unreadable (then `local`)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        mode = data["mode"]
        if mode not in MODES:
            return None
        return StoredConsent(
            mode=mode,
            since=str(data.get("since", "")),
            policy_version=int(data.get("policy_version", POLICY_VERSION)),
            history=tuple(data.get("history", ())),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


def write_stored(path: Path, mode: str, *, via: str, now: datetime | None = None) -> StoredConsent:
    """Record `mode` with its time and policy version; the file is replaced atomically."""
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; use one of {', '.join(MODES)}")
    stamp = (now or datetime.now(UTC)).isoformat(timespec="seconds").replace("+00:00", "Z")
    previous = read_stored(path)
    history = list(previous.history if previous else ())
    history.append({"mode": mode, "at": stamp, "policy_version": POLICY_VERSION, "via": via})
    record = {
        "mode": mode,
        "since": stamp,
        "policy_version": POLICY_VERSION,
        "history": history[-_HISTORY_LIMIT:],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".consent-")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            json.dump(record, out, indent=2)
        os.chmod(temporary, 0o600)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return StoredConsent(mode, stamp, POLICY_VERSION, tuple(record["history"]))


def decide(config: Config, stored: StoredConsent | None) -> ConsentState:
    """The effective mode and what decided it."""
    if config.disabled:
        return ConsentState(Mode.OFF, "AGENT_TELEMETRY_DISABLED", "AGENT_TELEMETRY_DISABLED is set")
    if config.source_of("mode") == "env" and config.mode:
        state = ConsentState(config.mode, "env", "AGENT_TELEMETRY_MODE is set")
    elif stored is not None:
        state = ConsentState(
            stored.mode,
            "command",
            f"set by agent-telemetry on {stored.since}",
            since=stored.since,
            policy_version=stored.policy_version,
        )
    elif config.mode:
        state = ConsentState(config.mode, "config", f"mode in {config.paths.config_file}")
    else:
        state = ConsentState(
            DEFAULT_MODE, "default", "no choice made yet: kept locally, never sent"
        )
    if state.mode != Mode.UPLOAD:
        return state
    if config.do_not_track:
        return ConsentState(Mode.LOCAL, "DO_NOT_TRACK", "DO_NOT_TRACK is set: nothing is uploaded")
    if config.ci and state.source != "env":
        return ConsentState(
            Mode.LOCAL,
            "CI",
            "CI is set: upload needs AGENT_TELEMETRY_MODE=upload explicitly",
        )
    return state
