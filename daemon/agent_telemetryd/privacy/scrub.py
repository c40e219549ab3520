"""Redact personal data and secrets from property values before anything is stored.

Each rule is a small `str -> str` function with its regex compiled once; `Scrubber` runs
them in a loop over every string in the properties, at any depth. No I/O.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from agent_telemetryd.events import Event

StringRule = Callable[[str], str]

EMAIL = "[email]"
IP = "[ip]"
SECRET = "[secret]"
CUT_MARK = "…[cut]"

_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
_IPV4 = re.compile(
    r"(?<![\d.])(?:(?:25[0-5]|2[0-4]\d|1?\d?\d)\.){3}(?:25[0-5]|2[0-4]\d|1?\d?\d)(?![\d.])"
)
# Full and compressed IPv6 forms with at least two groups around a `::`, or eight groups.
_IPV6 = re.compile(
    r"(?<![\w:])(?:(?:[0-9A-Fa-f]{1,4}:){7}[0-9A-Fa-f]{1,4}"
    r"|(?:[0-9A-Fa-f]{1,4}:){1,7}:(?:[0-9A-Fa-f]{1,4}(?::[0-9A-Fa-f]{1,4}){0,6})?"
    r"|::(?:[0-9A-Fa-f]{1,4}:){0,6}[0-9A-Fa-f]{1,4})(?![\w:])"
)
# Home directories on Linux, macOS and Windows, whoever's they are.
_HOME = re.compile(r"(?:/home/|/Users/|[A-Za-z]:\\Users\\)[^/\\\s\"']+")
_SECRET_SHAPES = re.compile(
    "|".join(
        (
            r"\bsk-(?:ant-|proj-|live-|test-)?[A-Za-z0-9_-]{16,}",  # OpenAI, Anthropic, Stripe
            r"\b(?:ghp|gho|ghu|ghs|ghr)_[A-Za-z0-9]{30,}",  # GitHub tokens
            r"\bgithub_pat_[A-Za-z0-9_]{20,}",
            r"\bxox[abposr]-[A-Za-z0-9-]{10,}",  # Slack
            r"\bAKIA[0-9A-Z]{16}\b",  # AWS access key id
            r"\bAIza[0-9A-Za-z_-]{35}\b",  # Google API key
            r"\bph[cx]_[A-Za-z0-9]{20,}",  # PostHog keys
            r"\bglpat-[A-Za-z0-9_-]{20,}",  # GitLab
            r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}",  # JWT
            r"-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?(?:-----END [A-Z ]*PRIVATE KEY-----|$)",
            r"(?i:\bbearer\s+)[A-Za-z0-9._~+/=-]{16,}",
            r"(?<=[?&])(?i:api[_-]?key|token|access_token|secret|password|sig)=[^&\s]+",
        )
    )
)
# A property whose name says it holds a secret is redacted whatever its value looks like.
_SECRET_KEY = re.compile(
    r"(?i)(?:pass(?:word|wd)?|secret|token|api[_-]?key|auth(?:orization)?|credential|cookie"
    r"|private[_-]?key|session[_-]?id)$"
)


def redact_secrets(text: str) -> str:
    return _SECRET_SHAPES.sub(SECRET, text)


def redact_emails(text: str) -> str:
    return _EMAIL.sub(EMAIL, text) if "@" in text else text


def redact_ips(text: str) -> str:
    text = _IPV4.sub(IP, text) if "." in text else text
    return _IPV6.sub(IP, text) if ":" in text else text


def home_paths_rule(own_home: str | None = None) -> StringRule:
    """Home directories become `~`: this user's, and any /home/NAME or /Users/NAME."""
    own = own_home.rstrip("/") if own_home and own_home not in ("/", "") else None

    def rule(text: str) -> str:
        if own and own in text:
            text = text.replace(own, "~")
        return _HOME.sub("~", text)

    return rule


def cut_rule(max_chars: int) -> StringRule:
    def rule(text: str) -> str:
        if len(text) <= max_chars:
            return text
        return text[: max_chars - len(CUT_MARK)] + CUT_MARK

    return rule


# Property values repeat (model names, tool names, statuses), and every rule is a pure
# function of the string: remembering results skips the regexes for nearly every value.
# Only short strings are remembered, and the memory is cleared when full, so it stays small.
CACHE_ENTRIES = 8192
CACHE_MAX_CHARS = 256


class Scrubber:
    """An `Event -> Event` transform that redacts every string in the properties."""

    def __init__(self, rules: Sequence[StringRule]) -> None:
        self._rules = tuple(rules)
        self._texts: dict[str, str] = {}
        self._secret_keys: dict[str, bool] = {}

    def __call__(self, event: Event) -> Event:
        if not event.properties:
            return event
        # Not dataclasses.replace(): it costs several times a plain construction per event.
        return Event(event.event, self._object(event.properties), event.ts_ms, event.uuid,
                     event.agent)  # fmt: skip

    def text(self, value: str) -> str:
        cached = self._texts.get(value)
        if cached is not None:
            return cached
        clean = value
        for rule in self._rules:
            clean = rule(clean)
        if len(value) <= CACHE_MAX_CHARS:
            if len(self._texts) >= CACHE_ENTRIES:
                self._texts.clear()
            self._texts[value] = clean
        return clean

    def _is_secret_key(self, key: str) -> bool:
        known = self._secret_keys.get(key)
        if known is None:
            known = _SECRET_KEY.search(key) is not None
            if len(self._secret_keys) >= CACHE_ENTRIES:
                self._secret_keys.clear()
            self._secret_keys[key] = known
        return known

    def _object(self, node: dict[str, Any]) -> dict[str, Any]:
        # The two cache lookups are inlined: this loop runs for every property of every event.
        texts, secret_keys = self._texts, self._secret_keys
        clean: dict[str, Any] = {}
        for key, value in node.items():
            kind = type(value)
            if kind is str:
                if value and secret_keys.get(key, None) is not False and self._is_secret_key(key):
                    clean[key] = SECRET
                else:
                    cached = texts.get(value)
                    clean[key] = cached if cached is not None else self.text(value)
            elif kind is int or kind is float or kind is bool or value is None:
                clean[key] = value  # the common case: nothing in it to redact
            elif isinstance(value, str):
                clean[key] = SECRET if value and self._is_secret_key(key) else self.text(value)
            else:
                clean[key] = self._value(value)
        return clean

    def _value(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return self._object(value)
        if isinstance(value, list):
            return [self._value(item) for item in value]
        return value


def default_scrubber(max_string_chars: int = 4096, own_home: str | None = None) -> Scrubber:
    # Secrets first: a token can contain an '@' or digits that other rules would split.
    return Scrubber(
        [
            redact_secrets,
            redact_emails,
            home_paths_rule(own_home if own_home is not None else str(Path.home())),
            redact_ips,
            cut_rule(max_string_chars),
        ]
    )
