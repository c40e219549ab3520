"""A shim's line of a shape seen before, from its bytes to the parts of its stored row in one
step: what validation and the transform chain would decide is decided once per shape, and
each line costs its decoding, a few set tests in C and its JSON. No I/O.

The shape is the event name, the agent name, the property names in order and the type of
each value. For a shape whose values are all flat (no object or array), everything but
the string values and the timestamp and uuid is then known: the names are valid or not,
the vocabulary's renaming (`Vocabulary.plan`), whether the content mask has a name to
take (`ContentMask.all_plain`), and whether the scrubber changes a name
(`Scrubber.key`, `Scrubber.text`). A line is taken here only when nothing in it changes
but the renaming: every string value is one the scrubber keeps (`Scrubber.text`, its
answers remembered). Anything else (a new name, a string the scrubber changes, an object
among the values, trace fields, a timestamp of a new second) is left to the full path,
which decides and words every refusal. tests/test_ingest_fast_paths.py holds this path
side by side with a daemon's ingest without it.
"""

from __future__ import annotations

from itertools import compress
from typing import Any, NamedTuple

import orjson

from agent_telemetryd.analytics.vocabulary import Vocabulary
from agent_telemetryd.events import (
    CANONICAL_UUID,
    EventError,
    Validator,
    agent_name,
    decode_wire_event,
    event_name,
)
from agent_telemetryd.known_reads import ReadParts, Renames, read_parts, rename_tokens
from agent_telemetryd.privacy.content import AGENT_CONTENT_NAMES, ContentMask
from agent_telemetryd.privacy.scrub import Scrubber, may_pair
from agent_telemetryd.privacy.secret_names import ORDINARY
from agent_telemetryd.read_columns import KnownStamps
from agent_telemetryd.shape_plans import remember

# Texts remembered as kept by the scrubber (short ones only, as the scrubber remembers).
_MAX_TEXTS = 8192
_MAX_TEXT_CHARS = 256
_FLAT_TYPES = frozenset({str, int, float, bool, type(None)})


class RowParts(tuple):  # type: ignore[type-arg]
    """(event, properties as JSON text, ts_ms, uuid, agent): a line this path took."""

    __slots__ = ()


class _Plan(NamedTuple):
    keys: tuple[str, ...] | None  # the stored property names, when they are renamed
    strings: tuple[bool, ...]  # which values are strings, for itertools.compress
    growth: int  # how much longer the renamed names make the properties' JSON
    name: str
    agent: str | None
    # For a read of lines (known_reads.py): the stored names, renamed or not; what the
    # row's agent column holds; and the renaming as replacements in the properties' JSON.
    stored: tuple[str, ...]
    row_agent: str
    tokens: Renames | None


_UNPLANNED: Any = object()


class KnownShapes:
    def __init__(
        self,
        validator: Validator,
        vocabulary: Vocabulary,
        mask: ContentMask | None,
        scrubber: Scrubber,
    ) -> None:
        self._validator = validator
        self._vocabulary = vocabulary
        self._mask = mask
        self._scrubber = scrubber
        self._plans: dict[tuple[Any, ...], _Plan | None] = {}
        # The plans a read takes (known_reads.py), by the shape without its value types:
        # the last one made for those names (the plans for other types differ only in
        # where the texts are). A line whose values are not of its kinds (texts where its
        # texts are, plain numbers, booleans or nulls elsewhere) makes the read go line by
        # line.
        self._read_plans: dict[tuple[Any, ...], _Plan] = {}
        self._kept_texts: set[str] = set()
        # The stamps of the latest seconds the validator has parsed, for reads.
        self._stamps = KnownStamps(validator.second_starts)

    def row_parts(self, line: bytes) -> RowParts | None:
        """The stored parts of `line` (its agent named in it, or none at all), or None
        when the full path is to take it."""
        try:
            wire = decode_wire_event(line)
        except Exception:  # whatever msgspec makes of bad input: the full path says
            return None
        properties = wire.properties
        if properties is None:
            properties = {}  # as validation makes of no properties, or null
        if wire.trace_id is not None or wire.span_id is not None or wire.parent_span_id is not None:
            return None
        values = properties.values()
        shape = (wire.event, wire.agent, tuple(properties), tuple(map(type, values)))
        plan = self._plans.get(shape, _UNPLANNED)
        if plan is _UNPLANNED:
            plan = self._plan(shape)
        if plan is None:  # a shape this path does not take
            return None
        if not self._kept_texts.issuperset(compress(values, plan.strings)) and not self._keeps(
            compress(values, plan.strings)
        ):
            return None
        uuid = wire.uuid
        if uuid is not None and not CANONICAL_UUID.match(uuid):
            return None
        timestamp = wire.timestamp
        ts_ms = None
        if timestamp is not None:
            ts_ms = self._validator.known_second_ms(timestamp)
            if ts_ms is None:
                return None
        keys = plan.keys
        try:
            text = orjson.dumps(dict(zip(keys, values)) if keys is not None else properties)  # noqa: B905
        except TypeError:
            # An integer beyond 64 bits: msgspec keeps it an int, orjson (the full path's
            # parser) reads it as a float. The full path stores what it always stored.
            return None
        # The size limit is on the properties as sent: flat, they differ from the stored
        # JSON only by the renamed names.
        if len(text) - plan.growth > self._validator.limits.max_event_bytes:
            return None
        return tuple.__new__(RowParts, (plan.name, text.decode(), ts_ms, uuid, plan.agent))

    def read_parts(self, lines: list[bytes]) -> ReadParts | None:
        """The stored parts of every one of `lines` (each naming its agent, or none at
        all) when `row_parts` takes each of them and what it knows already says so; else
        None, and the lines go one by one (known_reads.py)."""
        return read_parts(
            lines,
            self._read_plans,
            self._kept_texts,
            self._stamps,
            self._validator.limits.max_event_bytes,
        )

    def _keeps(self, texts: Any) -> bool:
        """True when the scrubber keeps every one of `texts` as it is (remembered)."""
        kept, text = self._kept_texts, self._scrubber.text
        for value in texts:
            if value in kept:
                continue
            if text(value) != value:
                return False
            if len(value) <= _MAX_TEXT_CHARS:
                if len(kept) >= _MAX_TEXTS:
                    kept.clear()
                kept.add(value)
        return True

    def _plan(self, shape: tuple[Any, ...]) -> _Plan | None:
        plan = self._make_plan(*shape)
        name, agent, keys, _ = shape
        size = len(name) + len(agent or "") + sum(map(len, keys))
        remember(self._plans, shape, plan, len(keys), size)
        if plan is not None:
            remember(self._read_plans, (name, agent, keys), plan, len(keys), size)
        return plan

    def _make_plan(
        self, name: str, agent: str | None, keys: tuple[str, ...], types: tuple[type, ...]
    ) -> _Plan | None:
        """How a line of this shape is stored, when that depends only on the shape."""
        if not _FLAT_TYPES.issuperset(types) or len(keys) > self._validator.limits.max_keys:
            return None
        try:
            event_name(name)
            if agent is not None:
                agent_name(agent)
        except EventError:
            return None
        rename = self._vocabulary.plan(name, keys)
        if rename is None or any(types[keys.index(key)] is str for key in rename.numeric):
            return None  # renamed by the values: the vocabulary's full path
        stored = rename.keys if rename.keys is not None else keys
        mask, scrubber = self._mask, self._scrubber
        if mask is not None and (
            name in AGENT_CONTENT_NAMES or not mask.all_plain(dict.fromkeys(stored).keys())
        ):
            return None
        if any(scrubber.key(key) != (key, ORDINARY) for key in stored) or may_pair(stored):
            return None  # the scrubber reads a value under a name, not as text alone
        growth = sum(
            len(orjson.dumps(new)) - len(orjson.dumps(old))
            for old, new in zip(keys, stored)  # noqa: B905
        )
        stored_agent = scrubber.text(agent) if agent else agent
        return _Plan(
            rename.keys,
            tuple(kind is str for kind in types),
            growth,
            scrubber.text(name),
            stored_agent,
            stored,
            stored_agent or "unknown",
            rename_tokens(keys, stored),
        )
