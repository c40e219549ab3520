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

try:  # CPython's own SHA-256 (3.12 and later)
    from _sha2 import sha256
except ImportError:
    try:  # the same, in 3.11
        from _sha256 import sha256
    except ImportError:
        from hashlib import sha256

_MAX_MS = (1 << 48) - 1

# Why not `hashlib.sha256`: it goes through OpenSSL, whose set-up and digest of one
# 52-byte span identity cost more than hashing it (7.5k instructions against 5k for the
# interpreter's built-in SHA-256, which `hashlib` itself falls back to). Same digest.


def identity_uuid(ms: int, *parts: bytes) -> str:
    """A version 8 uuid from `ms` (Unix milliseconds, 0 when unknown) and identity parts.

    Each part is hashed with its length in front, so (b"ab", b"c") and (b"a", b"bc") differ.
    """
    framed = b"".join([len(part).to_bytes(8, "big") + part for part in parts])
    return _uuid(ms, sha256(framed).hexdigest())


# `identity_uuid(ms, b"span", trace_id, span_id)` for a span's valid ids (16 and 8 bytes),
# framed the same way with the lengths written in advance: one call per span, not nine.
_SPAN_HEAD = (4).to_bytes(8, "big") + b"span" + (16).to_bytes(8, "big")
_SPAN_ID_LENGTH = (8).to_bytes(8, "big")


def span_uuid(ms: int, trace_id: bytes, span_id: bytes) -> str:
    """`identity_uuid(ms, b"span", trace_id, span_id)` for ids of their valid sizes."""
    # `_uuid` written out: this runs once per span, and a call is a tenth of its cost.
    h = sha256(b"".join((_SPAN_HEAD, trace_id, _SPAN_ID_LENGTH, span_id))).hexdigest()
    if not 0 <= ms <= _MAX_MS:  # a comparison first: min() and max() cost more
        ms = min(max(ms, 0), _MAX_MS)
    t = ms.to_bytes(6, "big").hex()
    return f"{t[:8]}-{t[8:]}-8{h[:3]}-{_VARIANT[h[4]]}{h[5:8]}-{h[8:20]}"


def _uuid(ms: int, digest: str) -> str:
    """The uuid of `ms` and a SHA-256 `digest` in hex.

    In hex digits: 12 of time, the version (8) and the digest's first 3 (12 bits); then
    the variant (binary 10) with the low 2 bits of the digest's 5th digit, and its digits
    6 to 20 (62 bits in all). Built as text: each step on a Python integer (shifts, masks,
    formatting 128 bits) costs more than a slice, for the same uuid.
    """
    if not 0 <= ms <= _MAX_MS:
        ms = min(max(ms, 0), _MAX_MS)
    t = ms.to_bytes(6, "big").hex()  # 12 digits; cheaper than f"{ms:012x}"
    return f"{t[:8]}-{t[8:]}-8{digest[:3]}-{_VARIANT[digest[4]]}{digest[5:8]}-{digest[8:20]}"


# A hex digit's low 2 bits under the variant's 10: 0 -> 8, 1 -> 9, 2 -> a, 3 -> b.
_VARIANT = {digit: "89ab"[int(digit, 16) & 3] for digit in "0123456789abcdef"}
