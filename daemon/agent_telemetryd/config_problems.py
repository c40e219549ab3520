"""What is wrong with a config, said so a user can fix it: every problem at once, each
with its file (or the environment) and key, and "did you mean" for a key that is not one.
No I/O."""

from __future__ import annotations

import difflib
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

# How alike a typo and a key must be to be suggested (difflib's ratio): `upload_intervall`
# and `upload_interval` are 0.97 alike, `max_rows` and `max_events` 0.67 — not suggested.
_SUGGEST_CUTOFF = 0.75


@dataclass(frozen=True)
class ConfigProblem:
    """One thing wrong with the settings: where (the config file, or the environment),
    which key, and what is wrong with it, with a suggestion when there is one."""

    where: str
    key: str  # empty when the problem is the whole file (unreadable, not TOML)
    message: str
    exposes_secret: bool = False  # the file holds a key and others can read it
    others_can_write: bool = False  # the file can be changed by someone else
    fix: str = ""  # the command that mends it, when there is one
    # A key like none of this version's (no "did you mean"): likely written for a newer
    # version, which may have made it limit what is sent. The daemon runs on such a
    # config, a downgrade must not stop it, but uploads nothing while the key is there.
    unknown_to_this_version: bool = False

    @property
    def file_not_used(self) -> bool:
        """The whole config file is set aside, not only this key (config_safety.py)."""
        return self.exposes_secret or self.others_can_write

    def __str__(self) -> str:
        if not self.key:
            return f"{self.where}: {self.message}"
        return f"{self.where}: {self.key}: {self.message}"


def unknown_keys(
    document: Mapping[str, Any],
    where: str,
    known: Collection[str],
    tables: Collection[str],
    by_variable: Mapping[str, str],
) -> list[ConfigProblem]:
    """A problem for each key of the TOML `document` that is no setting.

    `known` are the dotted setting keys, `tables` the sections they live in, and
    `by_variable` maps environment variable names to keys, so a variable's name written
    into the file is pointed at its key.
    """
    variables = {name.lower(): key for name, key in by_variable.items()}
    problems = []
    for key, value in document.items():
        if key in tables:
            if not isinstance(value, Mapping):
                problems.append(ConfigProblem(where, key, f"must be a table: [{key}]"))
                continue
            names = [f"{key}.{sub}" for sub in value if f"{key}.{sub}" not in known]
        elif isinstance(value, Mapping) and key not in known:
            names = [f"{key}.{sub}" for sub in value] or [key]
        else:
            names = [] if key in known else [key]
        for name in names:
            hint = variables.get(name.lower()) or closest(name, known)
            if hint:
                problems.append(
                    ConfigProblem(where, name, f"unknown setting; did you mean {hint}?")
                )
            else:
                problems.append(ConfigProblem(where, name, NOT_THIS_VERSIONS, **_UNKNOWN))
    return problems


NOT_THIS_VERSIONS = (
    "unknown setting, not one of this version's (written for a newer agent-telemetry?): "
    "the daemon runs, but uploads nothing until it is removed or agent-telemetry upgraded"
)
_UNKNOWN = {"unknown_to_this_version": True}


def refused_by_the_daemon(problems: list[ConfigProblem]) -> list[ConfigProblem]:
    """The problems the daemon will not start (or reload) on: all but keys this version
    does not know, under which it runs with uploads held."""
    return [problem for problem in problems if not problem.unknown_to_this_version]


def closest(name: str, known: Collection[str]) -> str | None:
    """The key a typo most likely meant: compared whole, then without its table
    (`api_key` at the top level is `http.api_key` or `posthog.api_key` misplaced)."""
    lowered = name.lower()
    found = difflib.get_close_matches(lowered, list(known), n=1, cutoff=_SUGGEST_CUTOFF)
    if found:
        return found[0]
    leaf = lowered.rsplit(".", 1)[-1]
    leaves = {key.rsplit(".", 1)[-1] for key in known}
    found = difflib.get_close_matches(leaf, sorted(leaves), n=1, cutoff=_SUGGEST_CUTOFF)
    if not found:
        return None
    return " or ".join(sorted(key for key in known if key.rsplit(".", 1)[-1] == found[0]))
