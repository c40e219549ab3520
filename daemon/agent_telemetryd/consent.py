"""Consent: three modes, when each took effect, and what decided it.

Order of precedence, first match wins:
  AGENT_TELEMETRY_DISABLED=1 → off; AGENT_TELEMETRY_MODE; the mode stored by
  `agent-telemetry mode|enable|disable`; `mode` in the config file; default `local`.
A stored record that cannot be read counts as `off` (see `UNREADABLE_MODE`).
Then caps that only ever lower it: DO_NOT_TRACK=1 → at most local; CI set → at most
local unless AGENT_TELEMETRY_MODE=upload was given explicitly.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from agent_telemetry._paths import (
    NotRegularFileError,
    make_private_dirs,
    open_regular,
    others_file_problem,
)
from agent_telemetryd.config import MODES, Config, Mode

POLICY_VERSION = 1
DEFAULT_MODE = Mode.LOCAL
# A record that exists but cannot be read held *some* choice, and `off` is the only mode
# that honours every one of them: read as `local`, a user who chose off would be collected
# from without a word. Wrongly off costs the user their own analytics until they set the
# mode again, which `status` and `doctor` tell them to do; wrongly local breaks the promise.
UNREADABLE_MODE = Mode.OFF
UNREADABLE_SOURCE = "unreadable"
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


@dataclass(frozen=True)
class _ConsentProblem:
    path: Path
    problem: str

    def __str__(self) -> str:
        return f"{self.path} {self.problem}"


class UnreadableConsent(_ConsentProblem):
    """A consent record that is there but cannot be read: what is wrong with it."""


class UntrustedConsent(_ConsentProblem):
    """A consent record someone else may have written (see read_stored): not used."""


StoredRecord = StoredConsent | UnreadableConsent | UntrustedConsent | None


def read_stored(path: Path) -> StoredRecord:
    """The mode last set by a command; None when never set, UnreadableConsent when the
    file is there but does not say a mode (then `off`: see UNREADABLE_MODE).

    A record another user owns, or may change, is UntrustedConsent unless it says `off`:
    with the config in a shared folder (AGENT_TELEMETRY_CONFIG=/tmp/team.toml puts the
    record at /tmp/consent.json) anyone could otherwise turn upload on for this user, as
    a config file of theirs could (config_safety.py). Keeping less is safe whoever asks.
    Only a regular file is read (open_regular): a named pipe put there would hold every
    reader in open() for good. One of the user's own is unreadable (`off`), another
    user's untrusted, by the same rules as any record.
    """
    others = None
    try:
        with open_regular(path, "r", encoding="utf-8") as handle:
            others = others_file_problem(os.fstat(handle.fileno()))
            text = handle.read()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as error:
        if others is None:  # not opened: still, whose is it?
            with contextlib.suppress(OSError):
                others = others_file_problem(path.stat())
        odd = error.strerror if isinstance(error, NotRegularFileError) else None
        if others is not None:
            return UntrustedConsent(path, f"{odd} and {others}" if odd else others)
        if odd is not None:
            return UnreadableConsent(path, odd)
        return UnreadableConsent(path, f"cannot be read ({_why(error)})")
    record = _parse_record(path, text)
    if others is not None and not (isinstance(record, StoredConsent) and record.mode == Mode.OFF):
        return UntrustedConsent(path, others)
    return record


def _parse_record(path: Path, text: str) -> StoredConsent | UnreadableConsent:
    try:
        data = json.loads(text)
    except ValueError as error:
        return UnreadableConsent(path, f"is not valid JSON ({_why(error)})")
    try:
        mode = data["mode"]
        if mode not in MODES:
            return UnreadableConsent(path, f"names no mode off, local or upload ({mode!r})")
        history = data.get("history", ())
        if not isinstance(history, list | tuple):
            raise TypeError("history is not a list")
        return StoredConsent(
            mode=mode,
            since=str(data.get("since", "")),
            policy_version=int(data.get("policy_version", POLICY_VERSION)),
            history=tuple(history),
        )
    except (ValueError, KeyError, TypeError) as error:
        return UnreadableConsent(path, f"is not a consent record ({_why(error)})")


def _why(error: Exception) -> str:
    if isinstance(error, OSError):
        return (error.strerror or type(error).__name__).lower()
    if isinstance(error, KeyError):
        return f"no {error.args[0]!r}"
    return str(error) or type(error).__name__


def write_stored(
    path: Path, mode: str, *, via: str, now: datetime | None = None
) -> tuple[StoredConsent, Path | None]:
    """Record `mode` with its time and policy version; the file is replaced atomically.

    An unreadable record is not overwritten: it is renamed aside first, kept for the user
    (it may be the only trace of earlier choices), and its new name is returned with the
    record; the history starts again from this choice.
    """
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; use one of {', '.join(MODES)}")
    moment = now or datetime.now(UTC)
    stamp = moment.isoformat(timespec="seconds").replace("+00:00", "Z")
    previous = read_stored(path)
    set_aside = None
    if isinstance(previous, UnreadableConsent):
        set_aside = _set_aside(path, moment)
        previous = None
    elif isinstance(previous, UntrustedConsent):
        previous = None  # its history is not the user's
    history = list(previous.history if previous else ())
    entry: dict[str, Any] = {"mode": mode, "at": stamp, "policy_version": POLICY_VERSION}
    entry["via"] = via
    if set_aside is not None:
        entry["unreadable_record_kept_as"] = set_aside.name
    history.append(entry)
    record = {
        "mode": mode,
        "since": stamp,
        "policy_version": POLICY_VERSION,
        "history": history[-_HISTORY_LIMIT:],
    }
    make_private_dirs(path.parent)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".consent-")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            json.dump(record, out, indent=2)
        os.chmod(temporary, 0o600)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return StoredConsent(mode, stamp, POLICY_VERSION, tuple(record["history"])), set_aside


def _set_aside(path: Path, moment: datetime) -> Path:
    """Rename an unreadable record to a name of its own beside it (never over another)."""
    base = f"{path.name}.unreadable-{moment.strftime('%Y%m%dT%H%M%SZ')}"
    for attempt in range(100):
        target = path.with_name(base if attempt == 0 else f"{base}-{attempt}")
        try:
            # A hard link fails when the name is taken, where a rename would replace it.
            os.link(path, target)
        except FileExistsError:
            continue
        except OSError:  # a file system without hard links: a rename, to a name free just now
            if target.exists():
                continue
            os.rename(path, target)
            return target
        path.unlink()
        return target
    raise FileExistsError(f"no free name to keep the unreadable {path} under")


def decide(config: Config, stored: StoredRecord) -> ConsentState:
    """The effective mode and what decided it."""
    untrusted = stored if isinstance(stored, UntrustedConsent) else None
    if untrusted is not None:
        stored = None
    if config.disabled:
        return ConsentState(Mode.OFF, "AGENT_TELEMETRY_DISABLED", "AGENT_TELEMETRY_DISABLED is set")
    if config.source_of("mode") == "env" and config.mode:
        state = ConsentState(config.mode, "env", "AGENT_TELEMETRY_MODE is set")
    elif isinstance(stored, UnreadableConsent):
        # Not the config's mode either: the record was set to override it.
        state = ConsentState(UNREADABLE_MODE, UNREADABLE_SOURCE, unreadable_reason(stored))
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
    if untrusted is not None and state.source in ("config", "default"):
        state = replace(state, reason=f"{state.reason}; {untrusted}, so it is not used")
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


def unreadable_reason(stored: UnreadableConsent) -> str:
    return (
        f"consent record unreadable: {stored}; using {UNREADABLE_MODE} until a mode is set "
        "again (agent-telemetry mode off|local|upload keeps the unreadable file beside it)"
    )
