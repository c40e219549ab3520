"""What a reload changes, and what only a restart can (pure: two configs in, a plan out).

Settings fall in two groups. Those the running daemon applies between one arrival (or one
flush) and the next: the sender and its keys, the upload interval and batch size, the rate
limit, the allowlists and scrubbing, the consent mode set in the file. And those read once
at start, because something was built from them that lives as long as the daemon: the
sockets and the port, the buffer's caps and retention, the event limits the listeners
enforce, the log level, and everything set by the environment (a running process keeps the
environment it was started with). A setting not listed here is read at start too: a new
setting is safe by default, never half-applied.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any

from agent_telemetryd.config import Config
from agent_telemetryd.ratelimit import describe_rules

# Applied while running, and what it takes effect on.
APPLIED: dict[str, str] = {
    "sender": "the next flush",
    "posthog_api_key": "the next flush",
    "posthog_host": "the next flush",
    "posthog_personal_api_key": "the next flush",
    "posthog_project_id": "the next flush",
    "http_endpoint": "the next flush",
    "http_api_key": "the next flush",
    "file_path": "the next flush",
    "upload_interval": "the schedule, from now",
    "batch_size": "the next flush",
    "upload_retry_base": "the next flush",
    "rate_limit": "events received from now on, and those waiting",
    "rate_limit_backlog": "events received from now on, and those waiting",
    "allow_events": "events received from now on",
    "allow_properties": "events received from now on",
    "max_string_chars": "events received from now on",
    "mode": "now (unless a command or the environment decides the mode)",
    "prices": "costs read from now on, past events' included",
    "unknown_settings": "the next flush (uploads wait while there are any)",
}
# Why the others wait for a restart, where there is more to say than "read at start".
_RESTART_BECAUSE: dict[str, str] = {
    "http_host": "the listeners are opened at start",
    "http_port": "the listeners are opened at start",
    "max_line_bytes": "the ingest socket's reader is set up at start",
    "max_event_bytes": "the listeners' request limits are set at start",
    "max_events": "the buffer's caps are set when it opens",
    "max_bytes": "the buffer's caps are set when it opens",
    "retention_days": "the buffer's retention is set when it opens",
    "log_level": "the log is set up at start",
    "do_not_track": "the daemon's environment is read at start",
    "disabled": "the daemon's environment is read at start",
    "ci": "the daemon's environment is read at start",
}
# Shown as set/unset/changed, never as their values.
SECRETS = frozenset({"posthog_api_key", "posthog_personal_api_key", "http_api_key"})
SENDER_SETTINGS = frozenset(
    {
        "sender",
        "posthog_api_key",
        "posthog_host",
        "posthog_personal_api_key",
        "posthog_project_id",
        "http_endpoint",
        "http_api_key",
        "file_path",
    }
)
PRIVACY_SETTINGS = frozenset({"allow_events", "allow_properties", "max_string_chars"})
RATE_LIMIT_SETTINGS = frozenset({"rate_limit", "rate_limit_backlog"})


@dataclass(frozen=True)
class Change:
    setting: str
    before: Any
    after: Any
    applied: bool
    when: str  # when it takes effect, or why it waits for a restart

    def as_dict(self) -> dict[str, Any]:
        return {
            "setting": self.setting,
            "from": self.before,
            "to": self.after,
            "applied": self.applied,
            ("takes_effect" if self.applied else "needs_restart_because"): self.when,
        }


@dataclass(frozen=True)
class ReloadPlan:
    changes: tuple[Change, ...]
    running: Config  # the new config, with what needs a restart kept as it runs now
    notes: tuple[str, ...] = field(default=())

    @property
    def applied(self) -> frozenset[str]:
        return frozenset(change.setting for change in self.changes if change.applied)

    @property
    def needs_restart(self) -> tuple[Change, ...]:
        return tuple(change for change in self.changes if not change.applied)


def plan(before: Config, after: Config) -> ReloadPlan:
    """Compare the running config with the one just read."""
    changes = []
    for item in fields(Config):
        name = item.name
        if name in ("paths", "sources"):
            continue
        old, new = getattr(before, name), getattr(after, name)
        if old == new:
            continue
        applied = name in APPLIED
        when = APPLIED[name] if applied else _RESTART_BECAUSE.get(name, "it is read at start")
        shown_new = "(a new key)" if name in SECRETS and old and new else _shown(name, new)
        changes.append(Change(name, _shown(name, old), shown_new, applied, when))
    if before.paths != after.paths:  # not from the file: the environment names them
        changes.append(Change("paths", None, None, False, "paths are read at start"))
    kept = {c.setting: getattr(before, c.setting) for c in changes if not c.applied}
    kept.pop("paths", None)
    sources = dict(after.sources)
    for name in kept:
        sources[name] = before.source_of(name)
    running = replace(after, sources=sources, **kept)
    return ReloadPlan(tuple(changes), running, _notes(after))


def _notes(after: Config) -> tuple[str, ...]:
    """What a user who just edited the file should know about settings it did not set."""
    from_env = sorted(name for name in SENDER_SETTINGS if after.source_of(name) == "env")
    if not from_env:
        return ()
    return (
        f"{', '.join(from_env)} {'comes' if len(from_env) == 1 else 'come'} from the "
        "daemon's environment, which a reload does not re-read: change it in the service's "
        "environment file and restart the service",
    )


def _shown(name: str, value: Any) -> Any:
    """A value as the reply may show it: keys as set/unset, sets sorted, rules spelled."""
    if name in SECRETS:
        return "(set)" if value else "(unset)"
    if isinstance(value, frozenset):
        return sorted(value)
    if name == "rate_limit":
        return describe_rules(value)
    if isinstance(value, tuple | list):
        return [str(item) for item in value]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)
