"""Decoding a batch body: orjson first, and a lenient second reading for valid JSON it refuses.

orjson refuses two things that are valid JSON by its grammar: a number beyond a double's
range (`1e400`) and an escaped lone surrogate (`"\\ud800"`, which JavaScript's
JSON.stringify writes for a broken string). Either one, in one event's properties, made
the whole body "not valid JSON": a 400 that a client takes as final, so every good event
of the batch was lost with the bad one. Read the second way, such a value reaches the
event that holds it, and only that event is refused (validation.py), as the contract
promises for any other bad value.
"""

from __future__ import annotations

import json
import math
from typing import Any

import orjson


class Unstorable:
    """A number that no double (nor orjson, nor the `properties` column's encoding) holds.

    Not a str, int or float, so every typed field refuses it, and orjson.dumps cannot
    encode it, so `properties` holding one is refused as "cannot be stored as JSON".
    """

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text


# orjson's own range for integers; beyond it, it reads a whole number as a double.
_LOWEST_INT = -(2**63)
_HIGHEST_INT = 2**64 - 1
# Digits beyond which a string is never read by int() (Python limits that to 4300 digits).
_MAX_INT_DIGITS = 20


def _number(text: str) -> float | Unstorable:
    value = float(text)
    return value if math.isfinite(value) else Unstorable(text)


def _integer(text: str) -> int | float | Unstorable:
    if len(text.lstrip("-")) <= _MAX_INT_DIGITS:
        value = int(text)
        if _LOWEST_INT <= value <= _HIGHEST_INT:
            return value
    # As orjson does: a whole number too large for 64 bits is read as a double.
    return _number(text)


def _no_constants(text: str) -> Any:
    raise ValueError(f"{text} is not JSON")


def loads(raw: bytes) -> Any:
    """The decoded body; ValueError when it is not JSON (or too deeply nested to read)."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        pass
    try:
        # The standard parser takes lone surrogates as they are, and numbers through the
        # hooks above; NaN and Infinity, which are not JSON, stay refused.
        text = raw.decode("utf-8")
        return json.loads(
            text, parse_float=_number, parse_int=_integer, parse_constant=_no_constants
        )
    except (UnicodeDecodeError, ValueError, RecursionError):
        # RecursionError: nesting orjson refused as too deep is too deep here as well.
        raise ValueError("body is not valid JSON") from None
