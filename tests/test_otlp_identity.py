"""Derived uuids are what the layout says, for any time and identity: an exporter's retry
sent before and after an upgrade must land on the same uuid, so the way they are computed
may change, never what they are."""

from __future__ import annotations

import hashlib
import uuid

from hypothesis import given
from hypothesis import strategies as st

from agent_telemetryd.otlp.identity import identity_uuid, span_uuid
from tests.otlp_messages import SPAN, START_MS, TRACE

_MAX_MS = (1 << 48) - 1
times = st.one_of(st.integers(0, _MAX_MS), st.integers(-(1 << 70), 1 << 70))


def layout(ms: int, *parts: bytes) -> str:
    """The uuid by the layout, step by step: the time (clamped to 48 bits), version 8, the
    first 12 bits of the SHA-256 of the length-framed parts, variant 10, then the 62 bits
    that follow the digest's first 18."""
    framed = b"".join(len(part).to_bytes(8, "big") + part for part in parts)
    digest = int.from_bytes(hashlib.sha256(framed).digest()[:10], "big")  # 80 bits
    ms = min(max(ms, 0), _MAX_MS)
    value = ms << 80 | 8 << 76 | (digest >> 68) << 64 | 0b10 << 62 | digest & ((1 << 62) - 1)
    return str(uuid.UUID(int=value))


@given(times, st.binary(min_size=16, max_size=16), st.binary(min_size=8, max_size=8))
def test_a_spans_uuid_is_the_layouts_for_any_time_and_ids(
    ms: int, trace_id: bytes, span_id: bytes
) -> None:
    made = span_uuid(ms, trace_id, span_id)
    assert made == layout(ms, b"span", trace_id, span_id)
    assert uuid.UUID(made).version == 8 and uuid.UUID(made).variant == uuid.RFC_4122


@given(times, st.lists(st.binary(max_size=80), max_size=5))
def test_an_identity_uuid_is_the_layouts_for_any_parts(ms: int, parts: list[bytes]) -> None:
    assert identity_uuid(ms, *parts) == layout(ms, *parts)


def test_the_layout_is_the_one_earlier_versions_stored_uuids_by() -> None:
    # The uuids pinned in the mapping's tests, made by the version that first stored them.
    assert layout(START_MS, b"span", TRACE, SPAN) == "01a20f5b-bcfb-8eed-860a-a1bdb04aeece"
    assert layout(START_MS, b"log", b"abc") == "01a20f5b-bcfb-8681-b09c-47b4be2f75ec"
    assert layout(-1, b"span", TRACE, SPAN) == "00000000-0000-8eed-860a-a1bdb04aeece"
    assert layout(1 << 60, b"span", TRACE, SPAN) == "ffffffff-ffff-8eed-860a-a1bdb04aeece"
