"""Chat messages, whatever they are filed under: what was said is content. No I/O.

The most common value an agent passes on is a chat request or answer as the model APIs
spell it: `{"role": "user", "content": "…"}` in `messages` or `input`, the answer's
`choices[].message` and a stream's `delta`, Gemini's `{"role", "parts": [{"text": …}]}`,
content as a list of parts (`[{"type": "text", "text": …}]`, Anthropic's `tool_use` and
`tool_result` blocks), tool calls with their `arguments`. No name says "content" there, so
the shape does: an object with a text `role` and a `content`, `parts` or `text` is a
message. In a message, and in everything it holds, every text is masked but those under a
name that gives the message's shape (`SHAPE_NAMES`: its role, a tool's or participant's
name, ids, types, finish reasons); numbers, booleans and null are kept as they are (token
counts, indexes). What was said can hide under any name (`refusal`, `reasoning_content`, a
tool's own argument names), so the rule lists what is kept, not what is masked.
"""

from __future__ import annotations

import re
from collections.abc import Set as AbstractSet
from typing import Any

import orjson

ROLE = "role"
# What a message says, in the spellings of the chat APIs.
_BODIES = frozenset({"content", "parts", "text"})
# Names whose texts give a message's shape, not what was said; they keep their texts in a
# message and in its parts and tool calls.
SHAPE_NAMES = frozenset(
    {"role", "name", "type", "id", "tool_call_id", "tool_use_id", "call_id", "index",
     "finish_reason", "stop_reason", "status", "mime_type", "mimeType", "media_type",
     "model"}
)  # fmt: skip
MARKER = re.compile(r"\[content: \d+ chars\]")


def content_marker(value: Any) -> str:
    """What stands in for a value: its size, never a piece of it."""
    if isinstance(value, str):
        chars = len(value)
    else:
        try:
            chars = len(orjson.dumps(value).decode())
        except TypeError:
            chars = len(str(value))
    return f"[content: {chars} chars]"


def may_be_message(names: AbstractSet[str]) -> bool:
    """Whether an object with these names is a chat message when its `role` is a text."""
    return ROLE in names and not _BODIES.isdisjoint(names)


def is_message(node: dict[str, Any]) -> bool:
    """An object shaped like a chat message: a text `role` and something said."""
    return type(node.get(ROLE)) is str and not _BODIES.isdisjoint(node)


def mask_message(node: dict[str, Any]) -> dict[str, Any]:
    """`node` with every text masked but those under `SHAPE_NAMES`, at any depth; the same
    object when nothing in it was left to mask."""
    changed: dict[str, Any] | None = None
    for key, value in node.items():
        if key in SHAPE_NAMES and type(value) is str:
            continue
        new = _masked(value)
        if new is not value:
            if changed is None:
                changed = dict(node)
            changed[key] = new
    return node if changed is None else changed


def _masked(value: Any) -> Any:
    kind = type(value)
    if kind is str:
        # Empty says nothing; a marker is what an earlier pass left (masking twice is once).
        return content_marker(value) if value and not MARKER.fullmatch(value) else value
    if kind is dict:
        return mask_message(value)
    if kind is list:
        items = [_masked(item) for item in value]
        return value if all(map(_same, items, value)) else items
    return value  # numbers, booleans, null: counts and flags, not what was said


def _same(new: Any, old: Any) -> bool:
    return new is old
