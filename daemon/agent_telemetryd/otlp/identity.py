"""Uuids made from what an item is, so an exporter's retry of the same payload is stored once.

The daemon keeps one row per uuid. OTLP items carry no uuid of their own, and an exporter
that gets no answer sends the same payload again: a uuid derived from the item (a span's
trace and span id; a hash of a log record or data point) makes that retry a duplicate.

The layout is UUIDv7's with version 8 (RFC 9562 §5.8, "custom"): the item's time in
milliseconds in the first 48 bits, then 74 bits of a SHA-256 of its identity. Time first
keeps the daemon's unique index appending, as its own v7 ids do (random keys would split
index pages and slow inserts as the table grows); the hash makes the id the item's own.
"""

from __future__ import annotations

import hashlib

_MAX_MS = (1 << 48) - 1


def identity_uuid(ms: int, *parts: bytes) -> str:
    """A version 8 uuid from `ms` (Unix milliseconds, 0 when unknown) and identity parts.

    Each part is hashed with its length in front, so (b"ab", b"c") and (b"a", b"bc") differ.
    """
    framed = b"".join([len(part).to_bytes(8, "big") + part for part in parts])
    return _uuid(ms, hashlib.sha256(framed).digest())


# `identity_uuid(ms, b"span", trace_id, span_id)` for a span's valid ids (16 and 8 bytes),
# framed the same way with the lengths written in advance: one call per span, not nine.
_SPAN_HEAD = (4).to_bytes(8, "big") + b"span" + (16).to_bytes(8, "big")
_SPAN_ID_LENGTH = (8).to_bytes(8, "big")


def span_uuid(ms: int, trace_id: bytes, span_id: bytes) -> str:
    """`identity_uuid(ms, b"span", trace_id, span_id)` for ids of their valid sizes."""
    return _uuid(ms, hashlib.sha256(_SPAN_HEAD + trace_id + _SPAN_ID_LENGTH + span_id).digest())


def _uuid(ms: int, digest: bytes) -> str:
    bits = int.from_bytes(digest[:10], "big")  # 80 bits; 74 are used
    value = (
        (min(max(ms, 0), _MAX_MS)) << 80
        | 0x8 << 76
        | (bits >> 68) << 64  # 12 bits
        | 0b10 << 62
        | (bits & _LOW_62)  # 62 bits
    )
    # Through bytes: `bytes.hex` is quicker than formatting a 128-bit int.
    h = value.to_bytes(16, "big").hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


_LOW_62 = (1 << 62) - 1
