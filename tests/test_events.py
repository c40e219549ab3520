"""Event validation: every rejection names the field and what to do."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent_telemetryd.events import EventError, Limits, parse_line, validate

LIMITS = Limits(max_event_bytes=1024, max_depth=3, max_keys=10)


def test_a_minimal_event_is_normalised() -> None:
    event = validate({"event": "agent.run"}, LIMITS)
    assert (event.event, event.properties, event.ts_ms, event.uuid, event.agent) == (
        "agent.run",
        {},
        None,
        None,
        None,
    )


def test_timestamp_with_offset_becomes_utc_milliseconds() -> None:
    event = validate({"event": "e", "timestamp": "2026-11-24T22:00:00.123+01:00"}, LIMITS)
    assert event.ts_ms == 1795554000123


def test_uuid_is_canonicalised() -> None:
    event = validate({"event": "e", "uuid": "0193A5C1-E000-7000-8000-000000000001"}, LIMITS)
    assert event.uuid == "0193a5c1-e000-7000-8000-000000000001"


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ([], "must be a JSON object, not an array"),
        ({}, "field 'event' is required"),
        ({"event": 3}, "field 'event' must be a string, not a number"),
        ({"event": ""}, "1-200 characters"),
        ({"event": "x" * 201}, "1-200 characters, got 201"),
        ({"event": "a\nb"}, "control characters"),
        ({"event": "e", "props": {}}, "unknown field 'props'"),
        ({"event": "e", "properties": [1]}, "'properties' must be an object, not an array"),
        ({"event": "e", "properties": {"a": {"b": {"c": {}}}}}, "nested deeper than 3"),
        ({"event": "e", "properties": {str(i): i for i in range(11)}}, "11 keys; the limit is 10"),
        ({"event": "e", "properties": {"s": "x" * 2000}}, "the limit is 1024"),
        ({"event": "e", "timestamp": "2026-11-24 21:00"}, "needs a UTC offset"),
        ({"event": "e", "timestamp": "tomorrow"}, "not RFC 3339"),
        ({"event": "e", "timestamp": 1700000000}, "'timestamp' must be an RFC 3339 string"),
        ({"event": "e", "uuid": "not-a-uuid"}, "'uuid' is not a UUID"),
        ({"event": "e", "agent": ""}, "'agent' must be 1-100 characters"),
    ],
)
def test_rejections_name_the_problem(document: object, message: str) -> None:
    with pytest.raises(EventError) as caught:
        validate(document, LIMITS)
    assert message in str(caught.value)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"{oops", "not valid JSON"),
        (b'{"event": "\xff"}', "not valid UTF-8"),
        (b"", "not valid JSON"),
    ],
)
def test_unparsable_lines_say_why(raw: bytes, message: str) -> None:
    with pytest.raises(EventError, match=message):
        parse_line(raw)


def test_rejection_messages_never_echo_values() -> None:
    secret = "sk-live-abcdefghijklmnop"
    for document in (
        {"event": "e", "uuid": secret},
        {"event": "e", "timestamp": secret},
        {"event": secret + "\n"},
    ):
        with pytest.raises(EventError) as caught:
            validate(document, LIMITS)
        assert secret not in str(caught.value)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4)
    ),
    max_leaves=20,
)


@given(st.dictionaries(st.text(max_size=12), json_values, max_size=6))
def test_any_json_object_is_either_valid_or_a_clean_event_error(document: dict) -> None:
    try:
        event = validate(document, LIMITS)
    except EventError as error:
        assert str(error)
    else:
        assert 1 <= len(event.event) <= 200


@given(st.binary(max_size=200))
def test_any_bytes_parse_or_fail_with_event_error(raw: bytes) -> None:
    with contextlib.suppress(EventError):
        parse_line(raw)
