"""Redact personal data and secrets from property values before anything is stored.

Each rule is a small `str -> str` function with its regex compiled once; `Scrubber` runs
them in a loop over every string in the properties, at any depth. A property whose name
says it holds a secret (`password`, `api_key`, `aws_secret_access_key`: see classify_key)
loses its whole value, whatever its type. No I/O.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from itertools import pairwise
from pathlib import Path
from typing import Any

from agent_telemetryd.events import Event

StringRule = Callable[[str], str]

EMAIL = "[email]"
IP = "[ip]"
SECRET = "[secret]"
CUT_MARK = "…[cut]"

# Anchored at the start of a local-part run and bounded (RFC 5321: 64 for the local part,
# 63 a label): unbounded, a 30 KB value like "aaa…@bbb…" took seconds on the event loop.
_EMAIL = re.compile(
    r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9._%+-]{1,64}@(?:[A-Za-z0-9-]{1,63}\.){1,8}[A-Za-z]{2,63}"
)
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
            r"\bsk-(?:ant-|proj-|live-|test-)?[A-Za-z0-9_-]{16,}",  # OpenAI, Anthropic
            r"\b[rs]k_(?:live|test)_[A-Za-z0-9]{16,}",  # Stripe secret and restricted keys
            r"\bwhsec_[A-Za-z0-9]{16,}",  # Stripe webhook secret
            r"\b(?:ghp|gho|ghu|ghs|ghr)_[A-Za-z0-9]{30,}",  # GitHub tokens
            r"\bgithub_pat_[A-Za-z0-9_]{20,}",
            r"\bxox[abposr]-[A-Za-z0-9-]{10,}",  # Slack
            r"\bxapp-[A-Za-z0-9-]{10,}",
            r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b",  # AWS access key id (long-lived, temporary)
            r"\bAIza[0-9A-Za-z_-]{35}(?![0-9A-Za-z_-])",  # Google API key
            r"\bph[cx]_[A-Za-z0-9]{20,}",  # PostHog keys
            r"\bglpat-[A-Za-z0-9_-]{20,}",  # GitLab
            r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}",  # JWT
            r"-----BEGIN [A-Z ]*PRIVATE KEY(?: BLOCK)?-----[\s\S]*?"
            r"(?:-----END [A-Z ]*PRIVATE KEY(?: BLOCK)?-----|$)",
            r"(?i:\bbearer\s+)[A-Za-z0-9._~+/=-]{8,}",
            r"(?<=://)[^/?#\s:@]+:[^/?#\s@]+(?=@)",  # user:password@ in a URL
        )
    )
)
# A secret after its name: `?token=…` in a URL, `PGPASSWORD=…`, `"api_key": "…"`,
# `Authorization: Basic …`. The name stays, so the text still says what was there. Each
# pattern starts at a fixed word or just after `?`/`&`, so the scan stays linear.
_SECRET_ASSIGNMENT = re.compile(
    r"(?P<name>"
    r"(?<=[?&#;])[\w.-]*(?i:key|token|secret|pass(?:word|wd)?|pwd|sig|signature|auth"
    r"|credentials?|session)="
    r"|(?i:password|passwd|passphrase|pwd|secret|token|api[_-]?key|access[_-]?key"
    r"|private[_-]?key|credentials?)[\"']?\s*[:=]\s*[\"']?"
    r"|(?i:authorization[\"']?\s*[:=]\s*[\"']?(?:(?:basic|bearer|digest|negotiate|token)\s+)?)"
    r")[^\s\"'&#<>]+"
)


_KEEP_NAME = r"\g<name>" + SECRET
# Every name above contains one of these: a text without any is not searched, which halves
# the cost of a long text that is not in the cache.
_ASSIGNMENT_WORDS = ("key", "token", "secret", "pass", "pwd", "sig", "auth", "credential",
                     "session")  # fmt: skip


def redact_secrets(text: str) -> str:
    text = _SECRET_SHAPES.sub(SECRET, text)
    if "=" in text or ":" in text:
        lowered = text.lower()
        if any(word in lowered for word in _ASSIGNMENT_WORDS):
            text = _SECRET_ASSIGNMENT.sub(_KEEP_NAME, text)
    return text


# What a property's name says about its value (DESIGN §10). The name is split into words
# at `_`, `-`, `.`, spaces, camelCase and digits, so `awsSecretAccessKey`, `x-api-key` and
# `DB_PASSWORD` read alike.
ORDINARY = 0
SECRET_NAME = 1  # the whole value is a secret, whatever its type
SECRET_IF_STRING = 2  # `pass`: a string is a password, a number counts passes
SECRET_IF_TOKEN = 3  # `openai_key`, `stripe_key`: a string of 16+ characters, no spaces

_WORD_BREAK = re.compile(
    r"[^A-Za-z0-9]+|(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])"
    r"|(?<=[A-Za-z])(?=[0-9])|(?<=[0-9])(?=[A-Za-z])"
)
# Secret wherever they appear in a word: `dbpassword`, `clientsecret`, `setcookie`.
_SECRET_PARTS = ("secret", "password", "passwd", "passphrase", "credential", "cookie",
                 "signature", "bearer", "apikey", "accesskey", "privatekey")  # fmt: skip
# Secret only as a whole word: `auth` but not `author`, `pwd` but not `cwd`.
_SECRET_WORDS = frozenset(
    {"pwd", "auth", "authorization", "oauth", "authn", "authz", "creds", "sessionid"}
)
_SECRET_PAIRS = frozenset(
    {("api", "key"), ("access", "key"), ("private", "key"), ("session", "id")}
)
# `token` names a secret (`access_token`, `csrfToken`) unless the name counts tokens, as
# LLM telemetry does everywhere: `max_token`, `token_count`, `input_token`. The plural
# (`tokens`, `tokens_in`, `total_tokens`) never matches.
_TOKEN_COUNT_WORDS = frozenset(
    {"count", "counts", "num", "number", "limit", "limits", "max", "min", "total", "usage",
     "used", "remaining", "budget", "len", "length", "size", "rate", "per", "estimate",
     "in", "out", "input", "output", "prompt", "completion"}
)  # fmt: skip


def classify_key(key: str) -> int:
    """ORDINARY, or how to treat the value of a property whose name says it holds a secret."""
    words = [w.lower() for w in _WORD_BREAK.split(key) if w and not w.isdigit()]
    if not words:
        return ORDINARY
    if words == ["key"]:
        return SECRET_NAME
    present = set(words)
    if present & _SECRET_WORDS or any(part in w for w in words for part in _SECRET_PARTS):
        return SECRET_NAME
    if any(pair in _SECRET_PAIRS for pair in pairwise(words)):
        return SECRET_NAME
    if any(w.endswith("token") for w in words) and not present & _TOKEN_COUNT_WORDS:
        return SECRET_NAME
    if "pass" in present:
        return SECRET_IF_STRING
    if words[-1].endswith("key"):
        return SECRET_IF_TOKEN
    return ORDINARY


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
    """An `Event -> Event` transform that redacts every string in the properties, and the
    whole value of a property whose name says it holds a secret."""

    def __init__(self, rules: Sequence[StringRule]) -> None:
        self._rules = tuple(rules)
        self._texts: dict[str, str] = {}
        # What classify_key said about each property name: agents use few distinct names, so
        # after the first events every name is found here. Ordinary names, nearly all of
        # them, are kept in a set: `in` on a set is the cheapest test the loop below can do.
        self._ordinary_keys: set[str] = set()
        self._secret_keys: dict[str, int] = {}

    def __call__(self, event: Event) -> Event:
        # Names too: an agent may well report `login by bob@example.com` as an event name.
        # Names repeat, so this is one dict lookup per event once the name was seen.
        name = self.text(event.event)
        if not event.properties and name == event.event:
            return event
        # Not dataclasses.replace(): it costs several times a plain construction per event.
        properties = self._object(event.properties) if event.properties else event.properties
        return Event(name, properties, event.ts_ms, event.uuid, event.agent)

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

    def _key_kind(self, key: str) -> int:
        kind = self._secret_keys.get(key)
        if kind is not None:
            return kind
        kind = classify_key(key)
        if len(key) <= CACHE_MAX_CHARS:
            if len(self._ordinary_keys) + len(self._secret_keys) >= CACHE_ENTRIES:
                self._ordinary_keys.clear()
                self._secret_keys.clear()
            if kind:
                self._secret_keys[key] = kind
            else:
                self._ordinary_keys.add(key)
        return kind

    def _object(self, node: dict[str, Any]) -> dict[str, Any]:
        # The cache lookups are inlined: this loop runs for every property of every event.
        texts, ordinary_keys = self._texts, self._ordinary_keys
        clean: dict[str, Any] = {}
        for key, value in node.items():
            if key not in ordinary_keys:
                key_kind = self._key_kind(key)
                if key_kind:
                    clean[key] = self._secret_named(key_kind, value)
                    continue
            kind = type(value)
            if kind is str:
                cached = texts.get(value)
                clean[key] = cached if cached is not None else self.text(value)
            elif kind is int or kind is float or kind is bool or value is None:
                clean[key] = value  # the common case: nothing in it to redact
            else:
                clean[key] = self._value(value)
        return clean

    def _secret_named(self, key_kind: int, value: Any) -> Any:
        if value is None or value == "":
            return value  # nothing there: saying so gives nothing away
        if key_kind == SECRET_NAME:
            return SECRET
        if isinstance(value, str):
            if key_kind == SECRET_IF_STRING:
                return SECRET
            if len(value) >= 16 and len(value.split(maxsplit=1)) == 1:
                return SECRET  # SECRET_IF_TOKEN
        return self._value(value)

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
