"""Event validation: every rejection names the field and what to do."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent_telemetryd.events import EventError, Limits, log_reason, parse_line, validate

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
        ({"event": "e", "timestamp": "2026-11-24 21:00:00"}, "needs a UTC offset"),
        ({"event": "e", "timestamp": "tomorrow"}, "not RFC 3339"),
        ({"event": "e", "timestamp": 1700000000}, "'timestamp' must be an RFC 3339 string"),
        ({"event": "e", "uuid": "not-a-uuid"}, "'uuid' is not a UUID"),
        ({"event": "e", "uuid": "0193a5c1-e000-7000-8000-000000000001\n"}, "not a UUID"),
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


def test_an_unknown_field_is_named_to_the_client_but_not_in_logs() -> None:
    """The HTTP answer names the field (the contract); the log line must not hold
    client-chosen text, which can be anything, a password included."""
    with pytest.raises(EventError) as caught:
        validate({"event": "e", "zzz_my_password_hunter2": 1}, LIMITS)
    reason = str(caught.value)
    assert "unknown field 'zzz_my_password_hunter2'" in reason
    logged = log_reason(reason)
    assert "hunter2" not in logged
    assert logged.startswith("unknown field") and "allowed: event, properties" in logged
    assert "hunter2" not in log_reason(f"request body is {reason}")


def test_log_reason_is_the_same_whatever_the_unknown_field_is_called() -> None:
    """Whatever quotes or escapes repr() gave the name, none of it reaches the log."""
    logged = set()
    for field in ("it's", 'say "x"', "both ' and \" \\", "\n\x00", "é" * 60, "zz"):
        with pytest.raises(EventError) as caught:
            validate({"event": "e", field: 1}, LIMITS)
        logged.add(log_reason(str(caught.value)))
    assert len(logged) == 1
    assert "unknown field" in logged.pop()


def test_log_reason_keeps_every_other_reason() -> None:
    """Those are fixed text: the log says as much as the client is told."""
    for document in ([], {}, {"event": 3}, {"event": "e", "timestamp": "tomorrow"}):
        with pytest.raises(EventError) as caught:
            validate(document, LIMITS)
        assert log_reason(str(caught.value)) == str(caught.value)
    assert log_reason("line longer than 10 bytes; skipped") == "line longer than 10 bytes; skipped"


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


@pytest.mark.parametrize(
    ("timestamp", "reason"),
    [
        ("20261124T210000Z", "not RFC 3339"),  # ISO 8601 basic form
        ("2026-11-24T21:00:00", "needs a UTC offset"),
        ("0001-01-01T00:00:00+01:00", "between 1970 and 9999"),  # year 0 once in UTC
        ("1969-12-31T23:59:59Z", "between 1970 and 9999"),
    ],
)
def test_timestamps_that_would_not_export_as_rfc3339_are_refused(
    timestamp: str, reason: str
) -> None:
    with pytest.raises(EventError, match=reason):
        validate({"event": "e", "timestamp": timestamp}, LIMITS)
