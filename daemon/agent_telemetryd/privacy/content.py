"""Content off by default: what people typed to a model, what it answered, and what tools
were called with are replaced by their length before anything is stored.

The names are those of OpenTelemetry's GenAI conventions (current and legacy), of
OpenInference, and OTLP log bodies (`log.body`), wherever they come from: OTLP or the
shims. A value under such a name, at any depth, becomes `"[content: N chars]"` (N counts
the characters of a string, or of the JSON text of anything else). Coding agents' own
events name their content in words of their own (`prompt`, `function_args`, `output`):
those are masked in the events they document them for, named in full
(`claude_code.user_prompt`) or by the short name (`user_prompt`), and only there, since
the same words elsewhere may well be a count or a status. A chat message (an object with a
`role` and what was said), wherever it sits, has every text in it masked but those naming
its shape (`message_shape`). Keeping content is the `capture_content` setting; what is kept
is still scrubbed. No I/O.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from itertools import compress
from typing import Any

from agent_telemetryd.events import Event
from agent_telemetryd.privacy.message_shape import (
    MARKER,
    ROLE,
    content_marker,
    is_message,
    mask_message,
    may_be_message,
)

CONTENT_NAMES = frozenset(
    {
        "gen_ai.input.messages",
        "gen_ai.output.messages",
        "gen_ai.system_instructions",
        "gen_ai.tool.call.arguments",
        "gen_ai.tool.call.result",
        "input.value",  # OpenInference
        "output.value",
        "llm.prompt_template.template",
        "llm.prompt_template.variables",
        "reranker.query",
        "traceloop.entity.input",  # OpenLLMetry: a workflow's or task's arguments
        "traceloop.entity.output",
        "ai.prompt",  # the Vercel AI SDK
        "ai.prompt.messages",
        "ai.response.text",
        "ai.response.object",
        "ai.response.tool_calls",
        "ai.response.reasoning",
        "ai.tool_call.args",
        "ai.tool_call.result",
        "$ai_input",  # PostHog's LLM analytics, through its SDKs and capture routes
        "$ai_input_state",
        "$ai_output",
        "$ai_output_choices",
        "$ai_output_state",
        "log.body",  # an OTLP log record's body
    }
)
# Names that begin so: `gen_ai.prompt.0.content` (OpenLLMetry), `llm.input_messages.0.
# message.content` (OpenInference, flattened), and the bare legacy `gen_ai.prompt`.
CONTENT_PREFIXES = ("gen_ai.prompt", "gen_ai.completion", "llm.input_messages",
                    "llm.output_messages", "llm.prompts", "retrieval.documents",
                    "reranker.input_documents", "reranker.output_documents",
                    "embedding.embeddings")  # fmt: skip
# Names that end so, wherever the object holding them sits: OpenInference's message,
# document and tool-call parts (`{"message.content": …}` inside a list of messages).
CONTENT_ENDINGS = ("message.content", "message.contents", "document.content",
                   "embedding.text", "function.arguments")  # fmt: skip
# Agents spell these names their own way (`GEN_AI_PROMPT`, `gen_ai.input_messages`,
# `toolCall.args`), so they are compared folded: lower case, without `.`, `_`, `-` or
# spaces. No ordinary name of those conventions folds onto one of them.
_SEPARATORS = str.maketrans("", "", "._- ")


def _fold(name: str) -> str:
    return name.lower().translate(_SEPARATORS)


_FOLDED_NAMES = frozenset(map(_fold, CONTENT_NAMES))
_FOLDED_PREFIXES = tuple(map(_fold, CONTENT_PREFIXES))
_FOLDED_ENDINGS = tuple(map(_fold, CONTENT_ENDINGS))
# The dotted beginnings of those names (`gen_ai`, `gen_ai.tool`, `input`), folded: an
# object under such a key continues the name, so `{"gen_ai": {"prompt": …}}` and
# `{"input": {"value": …}}` are the names they spell.
_STEMS = frozenset(
    _fold(name[:dot])
    for name in (*CONTENT_NAMES, *CONTENT_PREFIXES, *CONTENT_ENDINGS)
    for dot in (i for i, c in enumerate(name) if c == ".")
)
# Content under the coding agents' own attribute names, by the event that documents it.
AGENT_CONTENT_NAMES: dict[str, frozenset[str]] = {
    # Claude Code (its events as `claude_code.<event.name>`).
    "claude_code.user_prompt": frozenset({"prompt"}),
    "claude_code.tool_result": frozenset({"tool_parameters", "tool_input"}),
    "claude_code.api_request_body": frozenset({"body"}),
    "claude_code.api_response_body": frozenset({"body"}),
    # Gemini CLI.
    "gemini_cli.user_prompt": frozenset({"prompt"}),
    "gemini_cli.api_request": frozenset({"request_text"}),
    "gemini_cli.api_response": frozenset({"response_text"}),
    "gemini_cli.tool_call": frozenset({"function_args"}),
    # Codex.
    "codex.user_prompt": frozenset({"prompt"}),
    "codex.tool_result": frozenset({"arguments", "output"}),
}


def _with_short_names(by_full_name: dict[str, frozenset[str]]) -> dict[str, frozenset[str]]:
    """The same events under their short names too (`user_prompt`), as a record whose
    `event_name` or `event.name` gives only that part is named: for each short name, what
    any agent documents under it."""
    found = dict(by_full_name)
    for full, names in by_full_name.items():
        short = full.split(".", 1)[1]
        found[short] = found.get(short, frozenset()) | names
    return found


AGENT_CONTENT_NAMES = _with_short_names(AGENT_CONTENT_NAMES)
_NONE: frozenset[str] = frozenset()
_IS_CONTAINER = frozenset({dict, list}).__contains__
# Names remembered as not content, at most; then forgotten and learnt again. Only names
# this short are remembered: a key may be as long as an event (32 KiB), and 8,192 of those
# held ~250 MiB (10,000 events of one 20 KB key each took the daemon from 50 to 218 MiB).
_MAX_REMEMBERED = 8192
_MAX_REMEMBERED_CHARS = 256


def is_content_name(name: str) -> bool:
    folded = _fold(name)
    return (
        folded in _FOLDED_NAMES
        or folded.startswith(_FOLDED_PREFIXES)
        or folded.endswith(_FOLDED_ENDINGS)
    )


def _stem(name: str, path: str | None) -> str | None:
    """The folded name an object under `name` continues (its own keys are read as
    `name.key`), when it is the beginning of a content name; else None."""
    folded = (path or "") + _fold(name)
    return folded if folded in _STEMS else None


class ContentMask:
    """An `Event -> Event` transform replacing content by its length, at any depth.

    Copy on write: an event without content is returned as it came, not copied. A value
    that is already a marker (masked at the receiver, masked again here) stays as it is.
    """

    def __init__(self) -> None:
        # Names seen that are not content. Most events reuse a few dozen names, so most are
        # decided by one subset test of the event's keys against this set, in C.
        self._plain: set[str] = set()

    def __call__(self, event: Event) -> Event:
        properties = event.properties
        if not properties:
            return event
        # The common event, decided here without a call more: no content name among its
        # properties' names (all seen before), none its agent documents, no object or
        # array that could hold one.
        if (
            properties.keys() <= self._plain
            and event.event not in AGENT_CONTENT_NAMES
            and not any(map(_IS_CONTAINER, map(type, properties.values())))
        ):
            return event
        masked = self.properties(properties, event.event)
        return event if masked is properties else replace(event, properties=masked)

    def properties(
        self, node: dict[str, Any], event: str | None = None, path: str | None = None
    ) -> dict[str, Any]:
        """`node` (an event's properties) with content masked; the same object when there
        was none. `event`, the event's name, adds the content names its agent documents;
        `path`, the folded beginning of a content name that `node` sits under (`_stem`),
        makes its keys the rest of such a name."""
        if ROLE in node and is_message(node):
            return mask_message(node)
        agent_names = AGENT_CONTENT_NAMES.get(event, _NONE) if event is not None else _NONE
        keys = node.keys()
        if path is None and self.all_plain(keys) and agent_names.isdisjoint(keys):
            return self._nested(node)  # no content name here: only nested values may hold some
        changed: dict[str, Any] | None = None
        for key, value in node.items():
            kind = type(value)
            if (
                key in agent_names
                or (key not in self._plain and is_content_name(key))
                or (path is not None and is_content_name(path + key))
            ):
                if value is None or value == "" or (kind is str and MARKER.fullmatch(value)):
                    continue  # nothing there, or already masked
                new = content_marker(value)
            elif kind is dict:
                new = self.properties(value, path=_stem(key, path))
            elif kind is list:
                new = self._items(value)
            else:
                continue
            if new is value:
                continue
            if changed is None:
                changed = dict(node)
            changed[key] = new
        return node if changed is None else changed

    def _nested(self, node: dict[str, Any]) -> dict[str, Any]:
        changed: dict[str, Any] | None = None
        # Only the objects and arrays, picked out without a Python step per value.
        containers = compress(node.items(), map(_IS_CONTAINER, map(type, node.values())))
        for key, value in containers:
            if type(value) is dict:
                new = self.properties(value, path=_stem(key, None))
            else:
                new = self._items(value)
            if new is not value:
                if changed is None:
                    changed = dict(node)
                changed[key] = new
        return node if changed is None else changed

    def _items(self, items: list[Any]) -> list[Any]:
        changed: list[Any] | None = None
        for index, item in enumerate(items):
            kind = type(item)
            if kind is dict:
                new = self.properties(item)
            elif kind is list:
                new = self._items(item)
            else:
                continue
            if new is not item:
                if changed is None:
                    changed = list(items)
                changed[index] = new
        return items if changed is None else changed

    def all_plain(self, keys: Iterable[str]) -> bool:
        """True when none of `keys` (names, or a dict of them) is a content name and they
        are not a chat message's (`may_be_message`); the names not seen before are learnt,
        so a shape seen once is decided by one test in C. `role` is never learnt, so that
        an object with it is always looked at: it is a message's beside what was said."""
        plain = self._plain
        # `issuperset` looks each name up directly; `keys <= plain` on a dict's keys goes
        # through the generic containment protocol, a tenth more for a span's keys.
        if plain.issuperset(keys):
            return True
        if len(plain) >= _MAX_REMEMBERED:
            plain.clear()
        none_is_content = True
        names = set(keys)
        for name in names.difference(plain):
            if name == ROLE:
                # Alone, the role of a user or an agent: such shapes keep the short paths.
                if may_be_message(names):
                    none_is_content = False
            elif is_content_name(name):
                none_is_content = False
            elif len(name) <= _MAX_REMEMBERED_CHARS:
                plain.add(name)
        return none_is_content
