"""Pure parts of the server, tested with plain values: no database, no sockets."""

from __future__ import annotations

import io
import logging
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest
from aiohttp.http_exceptions import BadHttpMessage

from agent_telemetry_server import logs
from agent_telemetry_server.auth import bearer_token, match_key
from agent_telemetry_server.config import ConfigError, Rate, load_settings, parse_rate
from agent_telemetry_server.ratelimit import RateLimiter
from agent_telemetry_server.validation import (
    BodyError,
    EventTooLarge,
    duration_ms,
    is_error,
    parse_envelope,
    parse_events,
)

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
ANON = uuid.uuid4()


@pytest.mark.parametrize(
    ("event", "properties", "expected"),
    [
        ("tool.call.error", {}, True),
        ("agent.run.failed", {}, True),
        ("agent.run.completed", {"status": "error"}, True),
        ("agent.run.completed", {"error": "timeout"}, True),
        ("agent.run.completed", {"error": True}, True),
        ("agent.run.completed", {"error": 0}, False),
        ("agent.run.completed", {"error": 3}, True),
        ("agent.run.completed", {"error": None}, False),
        ("agent.run.completed", {"error": False}, False),
        ("agent.run.completed", {"error": ""}, False),
        ("agent.run.completed", {"status": "failed"}, True),
        ("agent.run.completed", {"status": "ok"}, False),
        ("agent.errors.shown", {}, False),
    ],
)
def test_error_rule(event: str, properties: dict[str, object], expected: bool) -> None:
    """The documented rule: name suffix, status == "error", or a truthy-ish error field."""
    assert is_error(event, properties) is expected


def test_duration_is_a_finite_non_negative_number_only() -> None:
    assert duration_ms({"duration_ms": 812}) == 812.0
    assert duration_ms({"duration_ms": 1.5}) == 1.5
    for bad in (True, "812", -1, None, [1]):
        assert duration_ms({"duration_ms": bad}) is None


def _event(**fields: object) -> dict[str, object]:
    base: dict[str, object] = {
        "uuid": str(uuid.uuid4()),
        "event": "e",
        "timestamp": "2026-11-24T11:00:00Z",
    }
    base.update(fields)
    return base


def test_timestamps_need_an_offset_and_not_far_future() -> None:
    batch = parse_events(
        ANON,
        [
            _event(timestamp="2026-11-24T11:00:00+02:00"),
            _event(timestamp="2026-11-24T11:00:00"),
            _event(timestamp="2026-11-24"),
            _event(timestamp=(NOW + timedelta(days=2)).isoformat()),
            _event(timestamp=12345),
            _event(received_at="yesterday"),
        ],
        NOW,
        10_000,
    )
    assert len(batch.records) == 1
    assert batch.records[0].ts == datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
    reasons = [r["reason"] for r in batch.rejected]
    assert reasons == [
        "timestamp: needs a date, a time and a UTC offset",
        "timestamp: needs a date, a time and a UTC offset",
        "timestamp: more than a day in the future",
        "timestamp: must be an RFC 3339 string",
        "received_at: must be an RFC 3339 string",
    ]


def test_timestamps_from_before_1970_or_the_retention_window_are_refused() -> None:
    batch = parse_events(
        ANON,
        [
            _event(timestamp="0001-01-01T00:00:00+14:00"),
            _event(timestamp="1969-12-31T23:59:59Z"),
            _event(timestamp=(NOW - timedelta(days=8)).isoformat()),
            _event(timestamp=(NOW - timedelta(days=6)).isoformat()),
            _event(received_at="0001-01-01T00:00:00+14:00"),
            _event(received_at="9999-12-31T23:59:59-14:00"),
            # received_at is not held to the window: only timestamp decides what is kept.
            _event(received_at=(NOW - timedelta(days=30)).isoformat()),
        ],
        NOW,
        10_000,
        retention_days=7,
    )
    assert [r["reason"] for r in batch.rejected] == [
        "timestamp: before 1970",
        "timestamp: before 1970",
        "timestamp: older than the 7-day retention window",
        "received_at: before 1970",
        "received_at: more than a day in the future",
    ]
    assert len(batch.records) == 2


def test_agent_falls_back_to_properties_agent() -> None:
    batch = parse_events(
        ANON, [_event(properties={"agent": "planner"}), _event(agent="x")], NOW, 10_000
    )
    assert [r.agent for r in batch.records] == ["planner", "x"]


def test_properties_agent_is_cleaned_never_a_reason_to_refuse() -> None:
    events = [
        _event(properties={"agent": "plan\nner"}),
        _event(properties={"agent": " \t\r\n"}),
        _event(properties={"agent": ""}),
        _event(properties={"agent": "a" * 500}),
        _event(agent="top", properties={"agent": "x\ny"}),
    ]
    batch = parse_events(ANON, events, NOW, 10_000)
    assert batch.rejected == []
    assert [r.agent for r in batch.records] == ["plan ner", None, None, "a" * 200, "top"]
    assert orjson.loads(batch.records[0].properties) == {"agent": "plan\nner"}


def test_envelope_errors_and_the_event_count_limit() -> None:
    with pytest.raises(BodyError, match="anonymous_id"):
        parse_envelope({"events": []}, 10)
    with pytest.raises(BodyError, match="must be a JSON object"):
        parse_envelope([], 10)
    with pytest.raises(EventTooLarge):
        parse_envelope({"anonymous_id": str(ANON), "events": [{}] * 11}, 10)


def test_event_size_limit_names_the_index() -> None:
    with pytest.raises(EventTooLarge) as caught:
        parse_events(ANON, [_event(), _event(properties={"x": "y" * 200})], NOW, 100)
    assert caught.value.index == 1


def test_rate_limiter_refills_and_says_how_long_to_wait() -> None:
    now = [0.0]
    limiter = RateLimiter(Rate(2, 60.0), lambda: now[0])
    assert [limiter.take("k") for _ in range(3)] == [0, 0, 30]
    assert limiter.take("other") == 0
    now[0] = 30.0
    assert limiter.take("k") == 0
    assert RateLimiter(None, lambda: 0.0).take("k") == 0


def test_rate_limiter_stays_bounded() -> None:
    now = [0.0]
    limiter = RateLimiter(Rate(1, 1.0), lambda: now[0], max_buckets=10)
    for i in range(100):
        now[0] += 0.01
        limiter.take(i)
    assert len(limiter) <= 10


def test_parse_rate() -> None:
    assert parse_rate("60/min") == Rate(60, 60.0)
    assert parse_rate("off") is None
    for bad in ("60", "x/min", "5/week", "-1/s"):
        with pytest.raises(ConfigError):
            parse_rate(bad)


def test_bearer_keys_match_in_constant_time_over_all_keys() -> None:
    assert bearer_token("Bearer abc") == "abc"
    assert bearer_token("bearer  abc ") == "abc"
    assert bearer_token("Basic abc") is None
    assert bearer_token(None) is None
    assert match_key("k2", ("k1", "k2")) == 1
    assert match_key("k", ("k1", "k2")) is None
    assert match_key(None, ("k1",)) is None
    assert match_key("k1", ()) is None
    # aiohttp hands over a header that is not UTF-8 with surrogate escapes: a wrong key.
    assert match_key(b"k1\xff".decode("utf-8", "surrogateescape"), ("k1",)) is None
    assert match_key("\ud800", ("k1",)) is None


def test_settings_precedence_defaults_toml_env(tmp_path: Path) -> None:
    config = tmp_path / "server.toml"
    config.write_text(
        '[server]\napi_keys = ["toml-key"]\nread_keys = "r1, r2"\nretention_days = 30\n'
        'key_rate = "10/s"\n'
    )
    config.chmod(0o600)
    settings = load_settings(config, {"TELEMETRY_API_KEYS": "env1, env2", "DATABASE_URL": "pg://x"})
    assert settings.api_keys == ("env1", "env2")
    assert settings.read_keys == ("r1", "r2")
    assert settings.retention_days == 30
    assert settings.key_rate == Rate(10, 1.0)
    assert settings.database_url == "pg://x"
    assert settings.with_overrides(port=9000, host=None).port == 9000
    assert load_settings(None, {"AGENT_TELEMETRY_SERVER_CONFIG": str(config)}).retention_days == 30


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("nope = 1", "unknown key 'nope'"),
        ("port = 'x'", "wrong type"),
        ("retention_days = 0", "at least 1"),
        ("storage = 'mongo'", "expected auto"),
        ("[", "not valid TOML"),
    ],
)
def test_bad_config_is_one_clear_error(tmp_path: Path, text: str, message: str) -> None:
    config = tmp_path / "server.toml"
    config.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_settings(config, {})


def test_foreign_log_records_lose_their_arguments_and_forbidden_keys_are_dropped() -> None:
    stream = io.StringIO()
    logs.configure(stream=stream)
    try:
        logging.getLogger("aiohttp.server").error("Error handling request from %s", "127.0.0.2")
        import structlog

        structlog.get_logger("t").info("hello", remote="127.0.0.2", count=3)
    finally:
        logging.getLogger().handlers.clear()
    lines = [orjson.loads(line) for line in stream.getvalue().splitlines()]
    assert lines[0]["event"] == "Error handling request from %s"
    assert lines[1]["count"] == 3
    assert "remote" not in lines[1]
    assert "127.0.0.2" not in stream.getvalue()


def test_foreign_exceptions_are_logged_by_type_never_by_text() -> None:
    """aiohttp's protocol errors quote the request: only their type is logged, at WARNING."""
    stream = io.StringIO()
    logs.configure(stream=stream)
    secret = "Bearer SECRETik1"
    try:
        server_logger = logging.getLogger("aiohttp.server")
        try:
            raise BadHttpMessage(f"Invalid header value char: b'Authorization: {secret}'")
        except BadHttpMessage:
            server_logger.exception("Error handling request from %s", "127.0.0.2")
        try:
            raise KeyError(secret)
        except KeyError:
            logging.getLogger("asyncio").error("Task exception was never retrieved", exc_info=True)
    finally:
        logging.getLogger().handlers.clear()
    output = stream.getvalue()
    assert secret not in output
    assert "127.0.0.2" not in output
    protocol, other = (orjson.loads(line) for line in output.splitlines())
    assert protocol["error_type"] == "BadHttpMessage"
    assert protocol["level"] == "warning"
    assert "exception" not in protocol and "traceback" not in protocol
    assert other["error_type"] == "KeyError"
    assert other["level"] == "error"
    assert "test_foreign_exceptions_are_logged_by_type_never_by_text" in other["traceback"]
