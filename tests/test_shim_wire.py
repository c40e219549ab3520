"""The shim's pure parts: socket paths, UUIDv7 and the encoded line."""

from __future__ import annotations

import json
import os
import time
import uuid
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent_telemetry import _wire, encode_event, ingest_socket_path, runtime_dir, uuid7
from agent_telemetry._wire import (
    MAX_LINE_BYTES,
    MAX_PROPERTIES_BYTES,
    LineTooLarge,
    format_timestamp,
    uuid7_ms,
)


def test_home_puts_sockets_under_run() -> None:
    env = {"AGENT_TELEMETRY_HOME": "/srv/at", "XDG_RUNTIME_DIR": "/run/user/1000"}
    assert runtime_dir(env) == Path("/srv/at/run")
    assert ingest_socket_path(env) == Path("/srv/at/run/ingest.sock")


def test_xdg_runtime_dir_when_no_home() -> None:
    env = {"XDG_RUNTIME_DIR": "/run/user/1000", "TMPDIR": "/var/folders/x"}
    assert runtime_dir(env, "linux") == Path("/run/user/1000/agent-telemetry")
    assert runtime_dir(env, "darwin") == Path("/run/user/1000/agent-telemetry")


def test_macos_uses_tmpdir() -> None:
    assert runtime_dir({"TMPDIR": "/var/folders/ab/T/"}, "darwin") == Path(
        "/var/folders/ab/T/agent-telemetry"
    )


def test_linux_fallback_is_per_user_in_tmp() -> None:
    assert runtime_dir({}, "linux") == Path(f"/tmp/agent-telemetry-{os.getuid()}")


def test_tilde_in_home_is_expanded_as_the_daemon_and_the_node_shim_expand_it() -> None:
    assert runtime_dir({"AGENT_TELEMETRY_HOME": "~/x"}) == Path.home() / "x" / "run"


def test_empty_variables_count_as_unset() -> None:
    env = {"AGENT_TELEMETRY_HOME": "", "XDG_RUNTIME_DIR": ""}
    assert runtime_dir(env, "linux") == Path(f"/tmp/agent-telemetry-{os.getuid()}")


def test_uuid7_is_version_7_with_the_rfc_variant_and_the_current_time() -> None:
    before = time.time_ns() // 1_000_000
    value = uuid7()
    after = time.time_ns() // 1_000_000
    parsed = uuid.UUID(value)
    assert parsed.version == 7
    assert parsed.variant == uuid.RFC_4122
    assert str(parsed) == value
    assert before <= uuid7_ms(value) <= after


@pytest.fixture
def fresh_uuid_state(monkeypatch: pytest.MonkeyPatch) -> None:
    """Forget the last millisecond, so tests may use fixed times in the past."""
    monkeypatch.setattr(_wire, "_last_ms", 0)


def test_uuid7_is_strictly_increasing_within_a_millisecond(fresh_uuid_state: None) -> None:
    ms = 1_700_000_000_000
    ids = [uuid7(ms) for _ in range(10_000)]
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)
    assert {uuid7_ms(i) for i in ids} == {ms}


def test_uuid7_orders_by_time(fresh_uuid_state: None) -> None:
    ids = [uuid7(ms) for ms in range(1_700_000_000_000, 1_700_000_000_050)]
    assert ids == sorted(ids)
    many = [uuid7() for _ in range(50_000)]
    assert many == sorted(many) and len(set(many)) == len(many)


def test_uuid7_for_an_earlier_time_keeps_that_time(fresh_uuid_state: None) -> None:
    uuid7(1_700_000_000_100)
    earlier = uuid7(1_700_000_000_000)
    assert uuid7_ms(earlier) == 1_700_000_000_000
    assert uuid.UUID(earlier).version == 7


def test_timestamp_is_utc_with_milliseconds() -> None:
    assert format_timestamp(0) == "1970-01-01T00:00:00.000Z"
    assert format_timestamp(1_795_554_000_123) == "2026-11-24T21:00:00.123Z"
    assert format_timestamp(1_795_554_000_999) == "2026-11-24T21:00:00.999Z"
    assert format_timestamp(1_795_554_001_000) == "2026-11-24T21:00:01.000Z"


def test_encoded_line_is_compact_json_with_the_uuid_from_the_event_time() -> None:
    line = encode_event(
        "agent.run.completed", {"duration_ms": 812}, agent="planner", now_ms=1_795_554_000_123
    )
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert b": " not in line and b", " not in line
    doc = json.loads(line)
    assert list(doc) == ["event", "properties", "timestamp", "uuid", "agent"]
    assert doc["timestamp"] == "2026-11-24T21:00:00.123Z"
    assert uuid7_ms(doc["uuid"]) == 1_795_554_000_123
    assert doc["properties"] == {"duration_ms": 812}


def test_explicit_timestamp_and_uuid_are_kept() -> None:
    given = "01935c1e-7b2a-7c3d-8e4f-0123456789AB"
    moment = datetime(2026, 11, 24, 22, 0, 0, 250_000, tzinfo=timezone(timedelta(hours=1)))
    doc = json.loads(encode_event("e", timestamp=moment, uuid=given))
    assert doc["uuid"] == given.lower()
    assert doc["timestamp"] == "2026-11-24T21:00:00.250Z"
    assert "properties" not in doc and "agent" not in doc


def test_text_is_utf8_not_escaped() -> None:
    line = encode_event("café", {"name": "naïve ☃"})
    assert "naïve ☃".encode() in line


_JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)


@given(st.dictionaries(st.text(), _JSON_VALUES, max_size=6))
def test_properties_are_written_as_compact_json_writes_them(properties: dict) -> None:
    line = encode_event("e", properties, agent="a")
    expected = json.dumps(properties, separators=(",", ":"), ensure_ascii=False)
    assert b'"properties":' + expected.encode() + b',"timestamp"' in line
    assert json.loads(line)["properties"] == json.loads(expected)


def test_a_cycle_in_properties_is_refused_not_followed() -> None:
    cyclic: dict = {"a": 1}
    cyclic["self"] = cyclic
    looped: list = [1]
    looped.append(looped)
    for properties in (cyclic, {"list": looped}):
        with pytest.raises(ValueError, match="nested deeper"):
            encode_event("e", properties)


@pytest.mark.parametrize(
    ("args", "kwargs"),
    [
        ((123,), {}),
        (("",), {}),
        (("x" * 201,), {}),
        (("tab\there",), {}),
        (("e", [1, 2]), {}),
        (("e", {"f": object()}), {}),
        (("e", {"n": float("inf")}), {}),
        (("e", {"s": "\ud800"}), {}),
        (("e",), {"timestamp": "2026-11-24T21:00:00"}),  # no offset
        (("e",), {"timestamp": 1.5}),
        (("e",), {"uuid": "nope"}),
        (("e",), {"agent": ""}),
    ],
)
def test_bad_events_are_refused(args: tuple, kwargs: dict) -> None:
    with pytest.raises((TypeError, ValueError)):
        encode_event(*args, **kwargs)


def test_lines_over_the_daemon_limit_are_refused() -> None:
    with pytest.raises(LineTooLarge):
        encode_event("e", {"blob": "x" * MAX_LINE_BYTES})
    assert len(encode_event("e", {"blob": "x" * (MAX_PROPERTIES_BYTES - 20)})) <= MAX_LINE_BYTES


def test_properties_over_the_daemons_32_kib_are_refused_as_too_large() -> None:
    """The daemon refuses properties over 32 KiB encoded; the shim counts them instead."""
    fits = {"blob": "x" * (MAX_PROPERTIES_BYTES - len('{"blob":""}'))}
    encode_event("e", fits)
    with pytest.raises(LineTooLarge):
        encode_event("e", {"blob": fits["blob"] + "x"})
    # Measured in UTF-8 bytes, as the daemon measures it, not in characters.
    with pytest.raises(LineTooLarge):
        encode_event("e", {"blob": "é" * (MAX_PROPERTIES_BYTES // 2)})


@pytest.mark.parametrize(
    "properties",
    [
        {1: "a", "1": "b"},
        {"nested": {True: 1, "true": 2}},
        {"list": [{None: 1}]},
        {float("nan"): 1},
    ],
)
def test_property_names_that_are_not_strings_are_refused(properties: dict) -> None:
    """JSON would write {1: "a", "1": "b"} with the key "1" twice: refused, not sent."""
    with pytest.raises(TypeError):
        encode_event("e", properties)


@pytest.mark.parametrize(
    "timestamp",
    [
        datetime(1, 1, 2, tzinfo=UTC),
        "0999-12-31T23:59:59Z",
        datetime(1969, 12, 31, 23, 59, 59, tzinfo=UTC),
        "9999-12-31T23:59:59-01:00",  # year 10000 in UTC
    ],
)
def test_timestamps_outside_1970_to_9999_are_refused(timestamp: object) -> None:
    """Before 1970 the year lost its zero padding ("1-01-02T…"); the daemon refuses both."""
    with pytest.raises(ValueError):
        encode_event("e", timestamp=timestamp)  # type: ignore[arg-type]


def test_timestamps_at_the_edges_of_the_range_are_kept() -> None:
    first = json.loads(encode_event("e", timestamp="1970-01-01T00:00:00Z"))
    last = json.loads(encode_event("e", timestamp="9999-12-31T23:59:59.999Z"))
    assert first["timestamp"] == "1970-01-01T00:00:00.000Z"
    assert last["timestamp"] == "9999-12-31T23:59:59.999Z"


def test_properties_nested_deeper_than_the_daemon_allows_are_refused() -> None:
    node: object = 1
    for _ in range(9):
        node = {"k": node}
    encode_event("e", {"k": node})  # 10 levels, the properties object included
    with pytest.raises(ValueError):
        encode_event("e", {"k": {"k": node}})


def test_paths_module_has_no_side_effects_on_import(tmp_path: Path) -> None:
    import subprocess
    import sys

    home = tmp_path / "home"
    code = "import agent_telemetry._paths as p; print(p.ingest_socket_path())"
    env = {**os.environ, "AGENT_TELEMETRY_HOME": str(home)}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == str(home / "run" / "ingest.sock")
    assert not home.exists()
