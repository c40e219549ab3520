"""A read of shim lines, each of a shape seen before, to its rows' parts all at once. No I/O.

ingest.sock reads ~25 lines a turn at 10,000 events/s, nearly always of a few shapes
`KnownShapes` has planned. `KnownShapes.row_parts` takes one such line for the price of
its decoding and a few dozen Python steps; here the same steps are taken once for the
whole read, each over all of its lines in C (maps and zips over the read's columns,
joined texts), and the renaming of a planned shape is done on the JSON of all lines at
once instead of a new dict per line. The read is taken only when every line is one
`row_parts` takes, with what it would make of it, from what is known already (its names
planned, its texts kept, its second known); anything else gives None and the read goes
line by line, which decides, remembers and words every refusal as before.
tests/test_ingest_reads.py holds both side by side.
"""

from __future__ import annotations

import functools
from itertools import chain, compress
from operator import itemgetter, sub
from typing import Any, NamedTuple

import msgspec
import orjson

from agent_telemetryd.read_columns import KnownStamps, all_canonical_uuids

# Pairs of (`"name":`, `"stored name":`) as orjson writes a key, for a shape's renamed names.
Renames = tuple[tuple[bytes, bytes], ...]


class ReadParts(NamedTuple):
    """The stored parts of every line of a read, by column, in the lines' order."""

    names: list[str]
    properties: list[str]  # JSON text
    ts_ms: list[int]
    uuids: tuple[str, ...]
    agents: list[str]  # what each row's agent column holds


class _ShimLine(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    """A line as shims send it when it is no span: any other field, a field of another
    type, no timestamp or no uuid makes msgspec refuse it, and its read goes line by line.
    (Fields in the order `astuple` gives them.)"""

    event: str
    timestamp: str
    uuid: str
    agent: str | None = None
    # Flat values only, as a plan is made for: an object or array among them is refused.
    properties: dict[str, str | int | float | bool | None] = msgspec.field(default_factory=dict)


_decode_line = msgspec.json.Decoder(_ShimLine).decode
_astuple = msgspec.structs.astuple
# A plan's fields a read takes (known_shapes._Plan), by position: its own getters run Python.
_STRINGS, _GROWTH, _NAME, _STORED, _ROW_AGENT, _TOKENS = map(itemgetter, (1, 2, 3, 5, 6, 7))
# What a renamed name may not hold (see rename_tokens).
_PLAIN_NAME = frozenset(",:[]{}")


# One object for every plan that renames alike (the same names, and agents of one kind
# each with plans of their own): a read's check that its lines are all renamed alike is
# then an identity test a line, not a comparison of the renamings (~1k instructions a
# line with four agents' plans).
@functools.lru_cache(maxsize=1024)
def rename_tokens(keys: tuple[str, ...], stored: tuple[str, ...]) -> Renames | None:
    """The renaming of `keys` to `stored` as replacements in their JSON, or None when the
    JSON cannot be renamed that way.

    orjson writes a flat object as `{"name":value,...}`; a value's text never holds a
    bare `"` (it is `\\"`), so `"name":` closes a key wherever it is. It is that key's
    alone when no name needs escaping (no other key can end in `\\"name`); the result is
    what renaming the dict gives when no two names end up the same (the dict would keep
    one) and no stored name is a name renamed after it (it would be renamed twice).
    A renamed name holds none of what JSON writes between two texts (`,` `:`) or what a
    read's JSON has between two lines (`_stored_json`): so its `"name":` cannot begin at
    the end of one text and end at the start of the next, and a renaming never makes
    or takes away a place where the read's JSON is cut. (The vocabulary's names are
    words and dotted words.)"""
    if len(set(stored)) != len(stored):
        return None
    pairs = []
    for old, new in zip(keys, stored, strict=True):
        old_token, new_token = orjson.dumps(old), orjson.dumps(new)
        if old_token[1:-1] != old.encode() or new_token[1:-1] != new.encode():
            return None  # escaped in JSON, or holding a quote
        if old != new:
            if not _PLAIN_NAME.isdisjoint(old + new):
                return None
            pairs.append((old_token + b":", new_token + b":"))
    renamed = {old for old, _ in pairs}
    if any(new in renamed for _, new in pairs):
        return None
    return tuple(pairs)


def read_parts(
    lines: list[bytes],
    plans: dict[tuple[Any, ...], Any],  # by (event, agent, property names)
    kept_texts: set[str],
    stamps: KnownStamps,
    max_event_bytes: int,
) -> ReadParts | None:
    """What `KnownShapes.row_parts` makes of each of `lines`, by column, when it takes
    every one of them and what `plans`, `kept_texts` and `stamps` hold now says
    so (none of them is changed); else None."""
    if not lines:
        return None
    try:
        wires = list(map(_decode_line, lines))
    except Exception:  # whatever msgspec makes of bad input: line by line
        return None
    events, timestamps, uuids, agents, properties = zip(*map(_astuple, wires), strict=True)
    keys = map(tuple, properties)
    shape_plans = list(map(plans.get, zip(events, agents, keys, strict=True)))
    if None in shape_plans:  # names not planned yet, or ones this path does not take
        return None
    # Each value of the kind its plan was made for: a text the scrubber keeps where the
    # plan has a text, a flat value of another type (as decoded) elsewhere: as many texts
    # as the plans have, all where they have them. All values of the read in one list.
    values = list(chain.from_iterable(map(dict.values, properties)))
    texts = list(compress(values, chain.from_iterable(map(_STRINGS, shape_plans))))
    if list(map(type, values)).count(str) != len(texts) or not kept_texts.issuperset(texts):
        return None
    if not all_canonical_uuids(uuids):
        return None
    ts_ms = stamps.ms(timestamps)
    if ts_ms is None:
        return None
    stored = _stored_json(properties, shape_plans, max_event_bytes)
    if stored is None:
        return None
    return ReadParts(
        list(map(_NAME, shape_plans)),
        stored,
        ts_ms,
        uuids,
        list(map(_ROW_AGENT, shape_plans)),
    )


def _stored_json(
    properties: tuple[dict[str, Any], ...], plans: list[Any], max_event_bytes: int
) -> list[str] | None:
    """Each line's properties as the row stores them (renamed), as orjson writes them;
    None for one over the size limit or an integer beyond 64 bits (see row_parts)."""
    tokens = plans[0][7]
    try:
        if tokens is not None and list(map(_TOKENS, plans)).count(tokens) == len(plans):
            # Every line renamed alike: the read's JSON in one call, each line's object
            # wrapped in a list of its own, renamed by one split and join a name (the two
            # passes a replace takes, in less), and cut where one line's list ends and
            # the next begins: `],[` is there between each two lines' objects, and only
            # there when the cut gives as many lines as there are (no text or name holds
            # it). Splitting on three characters skips through the text where cutting
            # `},{` (a replace, then a split on one character) visited every character.
            joined = orjson.dumps(list(zip(properties)))
            for old, new in tokens:
                joined = new.join(joined.split(old))
            if joined.isascii():  # as many characters as bytes
                texts = joined.decode()[2:-2].split("],[")
                sizes = map(len, texts)
            else:
                encoded = joined[2:-2].split(b"],[")
                sizes = map(len, encoded)
                texts = list(map(bytes.decode, encoded))
            if len(texts) == len(plans):
                # The limit is on the properties as sent (see row_parts).
                return texts if max(sizes) - plans[0][2] <= max_event_bytes else None
        renamed = map(dict, map(zip, map(_STORED, plans), map(dict.values, properties)))
        encoded = list(map(orjson.dumps, renamed))
    except TypeError:
        return None
    if max(map(sub, map(len, encoded), map(_GROWTH, plans))) > max_event_bytes:
        return None
    return list(map(bytes.decode, encoded))
