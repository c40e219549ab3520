"""Checks of one field across all the lines of a read, each in a few C calls. No I/O.

A read of shim lines holds the same kinds of value in every line: a canonical uuid, a
timestamp in the shims' form. Checked one line at a time, each costs a regular
expression or a handful of slices and tests in Python; joined into one text with a line
break between them (a character neither form holds), they are checked by slicing that
text at the places every value has its fixed characters, and by what is left once those
characters are taken out. Each function answers for the whole read: a value it cannot
vouch for makes it give up (None or False), and the read takes the line-by-line path,
which decides and words every refusal.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import repeat
from operator import add, itemgetter
from typing import Any

# 8-4-4-4-12 lowercase hex digits (`CANONICAL_UUID`): 36 characters.
_UUID = 36
_UUID_DASHES = (8, 13, 18, 23)
_HEX_DIGITS = b"0123456789abcdef"
# `2026-11-24T21:00:00.123Z` (`Validator.known_second_ms`): 24 characters, the second in
# the first 19, the milliseconds in 20-22.
_STAMP = 24
_SECOND = itemgetter(slice(0, 19))
_MILLIS_TEXT = itemgetter(slice(20, 23))
# "000".."999" -> 0..999: only three ASCII digits are keys, which is the check as well.
_MILLIS = {f"{ms:03d}": ms for ms in range(1000)}
_MILLIS_OF = _MILLIS.__getitem__


def _joined(values: Sequence[str], width: int) -> str | None:
    """`values` joined by line breaks when each one is `width` characters without a line
    break in it (so each value's k-th character is at k, k + width + 1, ...)."""
    n = len(values)
    text = "\n".join(values)
    if (
        len(text) != n * (width + 1) - 1
        or text.count("\n") != n - 1
        or text[width :: width + 1] != "\n" * (n - 1)
    ):
        return None
    return text


def all_canonical_uuids(uuids: Sequence[str]) -> bool:
    """True when every one of `uuids` is a uuid in canonical form (what
    `CANONICAL_UUID.match` takes)."""
    n = len(uuids)
    text = _joined(uuids, _UUID)
    if text is None or not text.isascii():
        return False
    dashes = "-" * n
    for at in _UUID_DASHES:
        if text[at :: _UUID + 1] != dashes:
            return False
    # With the dashes and line breaks where they belong, every other character must be
    # a lowercase hex digit: taking those out leaves the dashes and line breaks alone.
    return text.encode().translate(None, _HEX_DIGITS) == b"----\n" * (n - 1) + b"----"


def known_seconds_ms(timestamps: Sequence[str], second_starts: dict[str, int]) -> list[int] | None:
    """Unix ms of each of `timestamps` when all are in the shims' form and of seconds in
    `second_starts`, as `Validator.known_second_ms` gives them one by one; else None."""
    n = len(timestamps)
    text = _joined(timestamps, _STAMP)
    if text is None or text[19 :: _STAMP + 1] != "." * n or text[23 :: _STAMP + 1] != "Z" * n:
        return None
    first = timestamps[0][:19]
    # The usual read, all of one second: the second looked up once. Its text and the
    # point after it are in every stamp, and only at its start: a stamp has its point
    # at 19 and digits after it (which the milliseconds' lookup below checks).
    if text.count(first + ".") == n:
        second = second_starts.get(first)
        if second is None:
            return None
        seconds: Any = repeat(second, n)
    else:
        seconds = list(map(second_starts.get, map(_SECOND, timestamps)))
        if None in seconds:
            return None
    try:
        return list(map(add, seconds, map(_MILLIS_OF, map(_MILLIS_TEXT, timestamps))))
    except KeyError:  # not three ASCII digits
        return None


# The 1,000 stamps of a second, as its text's endings: "YYYY-MM-DDTHH:MM:SS" + ".mmmZ".
_ENDINGS = tuple(f".{ms:03d}Z" for ms in range(1000))
# Stamps of one second checked the long way before `KnownStamps` holds that second. Its
# 1,000 stamps take ~0.11 ms to make (and ~170 KB); a lookup saves ~0.1 us a stamp, so
# it pays from ~2,000 events a second on (at 10,000 a second, from the second's first
# tenth on), and a slower sender's seconds are never made at all.
_HOLD_AFTER = 1000


class KnownStamps:
    """`known_seconds_ms` by one lookup a stamp, for reads whose stamps are all of the
    latest busy second. No I/O.

    Checked column by column, a read's stamps cost a slice, a lookup and an addition each
    and the checks of their joined text. Here each stamp in the shims' form of the second
    held is a key, with its Unix ms as the value, so a stamp that is a key is one
    `known_seconds_ms` takes, and its value is what it gives. The second is held only
    while `second_starts` holds it with the same start (it only ever adds, and clears
    itself when full): the keys are stamps of a second it knows now. A read with any
    other stamp is checked as before, and counted against its last stamp's second; a
    second later than the one held with _HOLD_AFTER stamps so counted is held next. So
    the table follows the clock and is made at most once a second; a backlog's older
    seconds never take its place."""

    def __init__(self, second_starts: dict[str, int]) -> None:
        self._second_starts = second_starts
        self._second = ""  # the second held ("" none), its start, and its stamps' ms
        self._start = 0
        self._ms: dict[str, int] = {}
        self._counting = ""  # the second whose stamps are being counted, and how many
        self._counted = 0

    def ms(self, timestamps: Sequence[str]) -> list[int] | None:
        """What `known_seconds_ms(timestamps, second_starts)` gives."""
        starts = self._second_starts
        if self._second:
            if starts.get(self._second) == self._start:
                found = list(map(self._ms.get, timestamps))
                if None not in found:
                    return found
            else:  # forgotten since: nothing held
                self._second, self._ms = "", {}
        ms = known_seconds_ms(timestamps, starts)
        if ms is not None:
            second = timestamps[-1][:19]
            if second == self._counting:
                self._counted += len(timestamps)
            else:
                self._counting, self._counted = second, len(timestamps)
            if self._counted >= _HOLD_AFTER and second > self._second:
                start = self._start = starts[second]
                self._second = second
                stamps = map(second.__add__, _ENDINGS)
                self._ms = dict(zip(stamps, range(start, start + 1000), strict=True))
        return ms
