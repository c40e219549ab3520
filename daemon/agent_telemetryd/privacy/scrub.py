"""Redact personal data and secrets from events before anything is stored. No I/O.

Names are content: the event name, the source (agent) name and every property key, at
any depth, get the same rules as string values (`text_rules`). A key that is itself a
secret or an address becomes its marker, and two keys that become the same are kept apart
(`[email]`, `[email]#2`), never merged. A property whose name says it holds a secret
(`secret_names.classify_key`) loses its string values; numbers, booleans and null keep
their type and value, since only a string can be a secret, and so does a count as text
under a name that says `token` (`cached_token: "4096"`). A property whose name says it
holds a person's login or name (`process.owner`, `user.name`) keeps `[user]` instead.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Container, Iterable, Sequence
from pathlib import Path
from typing import Any

from agent_telemetryd.events import Event
from agent_telemetryd.privacy.secret_names import (
    ORDINARY,
    SECRET_IF_CREDENTIAL,
    SECRET_NAME,
    TOKEN_NAME,
    USER_NAME,
    VERSION_NAME,
    classify_key,
    is_count,
    is_version_number,
    looks_like_credential,
    stronger,
)
from agent_telemetryd.privacy.text_rules import (
    SECRET,
    USER,
    StringRule,
    cut_rule,
    home_paths_rule,
    host_name_rule,
    redact_bare_aws_secrets,
    redact_emails,
    redact_ips,
    redact_secrets,
    untouched_test,
)

# Property values repeat (model names, tool names, statuses), and every rule is a pure
# function of the string: remembering results skips the regexes for nearly every value.
# Only short strings are remembered, and the memory is cleared when full, so it stays small.
CACHE_ENTRIES = 8192
CACHE_MAX_CHARS = 256
_ONLY_TEXT = {str}
# A name/value pair: the entry holding the value, and those that may name it.
_PAIR_VALUE = "value"
_PAIR_NAMES = ("name", "key", "header")
_VALUE_HIDING_KINDS = frozenset({SECRET_NAME, TOKEN_NAME, SECRET_IF_CREDENTIAL, USER_NAME})
# What a command-line option's name may say of the argument after it.
_SECRET_KINDS = frozenset({SECRET_NAME, TOKEN_NAME, SECRET_IF_CREDENTIAL})
# Longer than this, an item that starts with `-` is not a command-line option.
MAX_OPTION_CHARS = 64
# What JSON makes besides objects and arrays: values that are stored as they are, but for
# strings, which may hold what the rules redact.
_FLAT_TYPES = frozenset({str, int, float, bool, type(None)})
# What a name may say of its value for a text the rules keep to be kept under it.
_KEEPING_KINDS = frozenset({ORDINARY, VERSION_NAME})


def may_pair(keys: Container[str]) -> bool:
    """True when an object of these keys may be a name/value pair, whose value the
    scrubber reads under the name the other entry gives (`Scrubber.properties`)."""
    return _PAIR_VALUE in keys and any(label in keys for label in _PAIR_NAMES)


def distinct_name(name: str, *taken: Container[str]) -> str:
    """`name`, or `name#2`, `name#3`…: the first that none of `taken` holds."""
    candidate, n = name, 1
    while any(candidate in names for names in taken):
        n += 1
        candidate = f"{name}#{n}"
    return candidate


class Scrubber:
    """An `Event -> Event` transform: every name and string in the event through the rules,
    and the strings under a secret-named property redacted whole."""

    def __init__(
        self, rules: Sequence[StringRule], untouched: Callable[[str], bool] | None = None
    ) -> None:
        self._rules = tuple(rules)
        # True only of texts every rule keeps as they are (`text_rules.untouched_test`):
        # those skip the rules. Every span brings a new response id, mostly such a text.
        self._untouched = untouched
        self._texts: dict[str, str] = {}
        # The texts in `_texts` that the rules keep as they are: nearly all of them.
        self._kept_texts: set[str] = set()
        # Agents use few distinct property names, so after the first events every name is
        # found here. Names kept as they are with ordinary values, nearly all of them, are
        # in a set: `in` on a set is the cheapest test the loop below can do. The others
        # map to their scrubbed form and what they say about their value.
        self._ordinary_keys: set[str] = set()
        self._special_keys: dict[str, tuple[str, int]] = {}
        # Names kept as they are under which a text the rules keep is kept too: the
        # ordinary ones and those that name a version (`otel.scope.version`), where a text
        # is kept either as a version number or by the rules.
        self._keeping_keys: set[str] = set()

    def __call__(self, event: Event) -> Event:
        # Names repeat, so each is one dict lookup per event once it was seen (inlined: this
        # runs for every event).
        texts, raw_name, raw_agent = self._texts, event.event, event.agent
        name = texts.get(raw_name) or self.text(raw_name)
        agent = raw_agent and (texts.get(raw_agent) or self.text(raw_agent))
        raw = event.properties
        properties = self.properties(raw) if raw else raw
        if properties is raw and name == raw_name and agent == raw_agent:
            return event  # nothing to redact: the event as it came, not a copy
        # Not dataclasses.replace(): it costs several times a plain construction per event.
        return Event(
            name,
            properties,
            event.ts_ms,
            event.uuid,
            agent,
            event.trace_id,
            event.span_id,
            event.parent_span_id,
        )

    def name(self, name: str) -> str:
        """A name (event, source, property key, attribute key) as it may be stored."""
        return self.text(name)

    def text(self, value: str) -> str:
        cached = self._texts.get(value)
        if cached is not None:
            return cached
        clean = value
        untouched = self._untouched
        if untouched is None or not untouched(value):
            for rule in self._rules:
                clean = rule(clean)
        if len(value) <= CACHE_MAX_CHARS:
            if len(self._texts) >= CACHE_ENTRIES:
                self._texts.clear()
                self._kept_texts.clear()
            self._texts[value] = clean
            if clean == value:
                self._kept_texts.add(value)
        return clean

    def key(self, key: str) -> tuple[str, int]:
        """The scrubbed form of a property name and what it says about its value."""
        known = self._special_keys.get(key)
        if known is not None:
            return known
        found = (self.text(key), classify_key(key))
        if len(key) <= CACHE_MAX_CHARS:
            if len(self._ordinary_keys) + len(self._special_keys) >= CACHE_ENTRIES:
                self._ordinary_keys.clear()
                self._special_keys.clear()
                self._keeping_keys.clear()
            if found == (key, ORDINARY):
                self._ordinary_keys.add(key)
            else:
                self._special_keys[key] = found
            if found[0] == key and found[1] in _KEEPING_KINDS:
                self._keeping_keys.add(key)
        return found

    def properties(self, node: dict[str, Any]) -> dict[str, Any]:
        """A mapping with every key and value scrubbed, at any depth (properties, or the
        attributes of anything else that is stored); `node` itself when nothing in it
        changes."""
        # A name and its value as two entries (`{"name": "DB_PASSWORD", "value": …}`, as
        # Kubernetes' env, HAR's headers and many tools' arguments write them): the value
        # is read under the name it is given.
        paired = self._paired_kind(node) if "value" in node else ORDINARY
        # `issuperset`: each name looked up directly, not through `keys() <=`'s protocol.
        if not paired and self._keeping_keys.issuperset(node) and self._keeps_values(node.values()):
            return node
        texts, ordinary_keys = self._texts, self._ordinary_keys
        # The cache lookups are inlined: this loop runs for every property of every event.
        clean: dict[str, Any] = {}
        for key, value in node.items():
            if key in ordinary_keys:
                name = key
            else:
                name, key_kind = self.key(key)
                if name != key:
                    # Never onto another key of this object, kept or renamed.
                    name = distinct_name(name, node, clean)
                if key_kind:
                    clean[name] = self._under_name(key_kind, value)
                    continue
            kind = type(value)
            if kind is str:
                cached = texts.get(value)
                clean[name] = cached if cached is not None else self.text(value)
            elif kind is int or kind is float or kind is bool or value is None:
                clean[name] = value  # the common case: nothing in it to redact
            else:
                clean[name] = self._value(value)
        if paired:
            clean[_PAIR_VALUE] = self._under_name(paired, node[_PAIR_VALUE])
        return clean

    def _paired_kind(self, node: dict[str, Any]) -> int:
        """What the name entry of a name/value pair says of its value: one of
        `_VALUE_HIDING_KINDS`, else ORDINARY."""
        for label in _PAIR_NAMES:
            given = node.get(label)
            if type(given) is str and len(given) <= MAX_OPTION_CHARS:
                kind = self.key(given)[1]
                if kind in _VALUE_HIDING_KINDS:
                    return kind
        return ORDINARY

    def _under_name(self, key_kind: int, value: Any) -> Any:
        """A value whose property name says what it is; containers pass the word down."""
        if isinstance(value, str):
            if key_kind == VERSION_NAME:
                # The rules' answer is remembered even when the version is kept as it is,
                # so that `_keeps_values` finds the text among those the rules keep.
                clean = self.text(value)
                return value if is_version_number(value) else clean
            if value and key_kind == USER_NAME:
                return USER
            if value and (
                key_kind == SECRET_NAME
                or (key_kind == TOKEN_NAME and not is_count(value))
                or (key_kind == SECRET_IF_CREDENTIAL and looks_like_credential(value))
            ):
                return SECRET
            return self.text(value)
        if isinstance(value, list):
            return [self._under_name(key_kind, item) for item in value]
        if isinstance(value, dict):
            clean: dict[str, Any] = {}
            for key, item in value.items():
                name, inner_kind = self.key(key)
                name = distinct_name(name, value, clean) if name != key else name
                clean[name] = self._under_name(stronger(key_kind, inner_kind), item)
            return clean
        return value  # numbers, booleans, null: only a string can be a secret

    def _keeps_values(self, values: Iterable[Any]) -> bool:
        """True when scrubbing leaves every one of `values` as it is, each under a name in
        `_keeping_keys`: numbers, booleans, null, and texts the rules keep, alone or in
        arrays of such values (GenAI's finish reasons). The rules run only for a text not
        seen yet (a span's new ids); any other value is for the general path."""
        # One Python loop: cheaper than the passes in C (each type read, filtered, set
        # tested) it would take to say the same of a mix of texts, numbers and arrays.
        kept = self._kept_texts
        for value in values:
            kind = type(value)
            if kind is str:
                if value not in kept and not self._keeps_new(value):
                    return False
            elif kind is list:
                # An option named like a secret (`--password`) is kept, but not the
                # argument after it (`_items`): an array of two or more may hold one.
                if len(value) > 1 and not self._holds_no_option(value):
                    return False
                for item in value:
                    kind = type(item)
                    if kind is str:
                        if item not in kept and not self._keeps_new(item):
                            return False
                    elif kind not in _FLAT_TYPES:
                        return False
            elif kind not in _FLAT_TYPES:
                return False
        return True

    def _keeps_new(self, text: str) -> bool:
        """The rules keep `text`, seen here for the first time (now remembered). A text too
        long to remember is left to the general path, which reads it once."""
        return len(text) <= CACHE_MAX_CHARS and self.text(text) == text

    def _value(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return self.properties(value)
        if isinstance(value, list):
            return self._items(value)
        return value

    def _items(self, items: list[Any]) -> list[Any]:
        """An array scrubbed item by item. A command line (`["mysql", "--password",
        "hunter2"]`) names a secret in one item and gives it in the next: the argument
        after an option named like a secret is read under that name."""
        clean = [self._value(item) for item in items]
        # Most arrays hold no text starting with `-` (finish reasons, span events): told
        # in C, with no Python step per item.
        if str not in map(type, items) or self._holds_no_option(items):
            return clean
        after = ORDINARY
        for index, item in enumerate(items):
            if type(item) is not str:
                after = ORDINARY
            elif after and item[:1] != "-":
                clean[index] = self._under_name(after, item)
                after = ORDINARY
            else:
                after = self._option_kind(item) if item[:1] == "-" else ORDINARY
        return clean

    def _holds_no_option(self, items: list[Any]) -> bool:
        """True when no text among `items` starts with `-`; told in C for an array of
        texts alone (the common one), else item by item."""
        if set(map(type, items)) == _ONLY_TEXT:
            joined = "\n".join(items)
            return joined[:1] != "-" and "\n-" not in joined
        return not any(type(item) is str and item[:1] == "-" for item in items)

    def _option_kind(self, item: str) -> int:
        """What a command-line option (`--api-key`, `-password`) says of the argument after
        it: one of `_SECRET_KINDS`, else ORDINARY (`--max-tokens`, `-v`, and
        `--password=…`, one item the text rules read whole)."""
        if len(item) > MAX_OPTION_CHARS or "=" in item or " " in item:
            return ORDINARY
        kind = self.key(item)[1]
        return kind if kind in _SECRET_KINDS else ORDINARY


def default_scrubber(
    max_string_chars: int = 4096, own_home: str | None = None, own_host: str | None = None
) -> Scrubber:
    """The daemon's rules. `own_home` and `own_host` (this machine's name; `""` for none)
    default to this user's home and this machine's name."""
    home = own_home if own_home is not None else str(Path.home())
    host = own_host if own_host is not None else socket.gethostname()
    host_rule = host_name_rule(host)
    # Secrets first: a token can contain an '@' or digits that other rules would split.
    rules: list[StringRule] = [
        redact_secrets,
        redact_bare_aws_secrets,
        redact_emails,
        home_paths_rule(home),
    ]
    if host_rule is not None:
        rules.append(host_rule)
    rules += [redact_ips, cut_rule(max_string_chars)]
    return Scrubber(rules, untouched_test(max_string_chars, home, host))
