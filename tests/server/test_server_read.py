"""Stats and analytics against a hand-computed fixture; read keys; health."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import asyncpg
import pytest
from server_helpers import INGEST_KEYS, READ_KEY, Running, make_batch, make_event

A = "aaaaaaaa-0000-4000-8000-000000000001"
B = "bbbbbbbb-0000-4000-8000-000000000002"
TODAY = datetime.now(UTC).replace(hour=0, minute=0, second=1, microsecond=0)
YESTERDAY = TODAY - timedelta(days=1) + timedelta(hours=12)
D0, D1 = YESTERDAY.date().isoformat(), TODAY.date().isoformat()


def _fixture() -> dict[str, list[dict[str, Any]]]:
    """Nine events; the expected figures in the tests below are worked out from this by hand."""
    run = "agent.run.completed"
    return {
        A: [
            make_event(run, {"duration_ms": 100}, YESTERDAY, "planner"),
            make_event(run, {"duration_ms": 200}, YESTERDAY, "planner"),
            make_event("tool.call.failed", {}, YESTERDAY, "planner"),  # error by name
            make_event(run, {"duration_ms": 400}, TODAY, "planner"),
            make_event(run, {"duration_ms": 500, "error": "boom"}, TODAY, "coder"),  # error
            make_event(run, {"duration_ms": "fast", "error": False}, TODAY, "coder"),  # neither
        ],
        B: [
            make_event(run, {"duration_ms": 300, "status": "error"}, YESTERDAY, "coder"),  # error
            make_event("session.start", {}, TODAY, None),
            make_event(run, {"duration_ms": 600}, TODAY, "coder"),
        ],
    }


@pytest.fixture
async def loaded(server: Running) -> Running:
    for anonymous_id, events in _fixture().items():
        status, body, _ = await server.post_batch(make_batch(events, anonymous_id))
        assert (status, body["accepted"]) == (200, len(events))
    return server


async def test_stats_match_the_fixture(loaded: Running) -> None:
    status, body = await loaded.get("/api/v1/telemetry/stats?days=2")
    assert status == 200
    assert body == {
        "from": D0,
        "to": D1,
        "events": 9,
        "unique_anonymous_ids": 2,
        "by_day": [
            {"day": D0, "events": 4, "unique_anonymous_ids": 2},
            {"day": D1, "events": 5, "unique_anonymous_ids": 2},
        ],
        "by_day_and_event": [
            {"day": D0, "event": "agent.run.completed", "events": 3, "unique_anonymous_ids": 2},
            {"day": D0, "event": "tool.call.failed", "events": 1, "unique_anonymous_ids": 1},
            {"day": D1, "event": "agent.run.completed", "events": 4, "unique_anonymous_ids": 2},
            {"day": D1, "event": "session.start", "events": 1, "unique_anonymous_ids": 1},
        ],
    }
    status, body = await loaded.get("/api/v1/telemetry/stats?days=1")
    assert (body["events"], body["from"]) == (5, D1)


async def test_read_answers_are_never_kept_by_a_cache(loaded: Running) -> None:
    """The team's figures, read with a key, stay out of a browser's cache on a shared
    computer and out of any proxy's."""
    headers = {"Authorization": f"Bearer {READ_KEY}"}
    for path in ("/api/v1/telemetry/stats", "/api/v1/analytics/overview"):
        async with loaded.session.get(f"{loaded.url}{path}", headers=headers) as resp:
            assert resp.status == 200
            assert resp.headers["Cache-Control"] == "no-store"
            assert resp.headers["X-Content-Type-Options"] == "nosniff"


async def test_stats_come_from_rollups_not_raw_rows(
    loaded: Running, db: asyncpg.Connection
) -> None:
    await db.execute("DELETE FROM events")
    _, body = await loaded.get("/api/v1/telemetry/stats?days=2")
    assert body["events"] == 9


async def test_agents(loaded: Running) -> None:
    status, body = await loaded.get("/api/v1/analytics/agents?days=2")
    assert status == 200
    assert body["agents"] == [
        {"agent": "coder", "events": 4, "errors": 2, "unique_anonymous_ids": 2,
         "event_types": 1, "first_day": D0, "last_day": D1},
        {"agent": "planner", "events": 4, "errors": 1, "unique_anonymous_ids": 1,
         "event_types": 2, "first_day": D0, "last_day": D1},
        {"agent": None, "events": 1, "errors": 0, "unique_anonymous_ids": 1,
         "event_types": 1, "first_day": D1, "last_day": D1},
    ]  # fmt: skip


async def test_errors(loaded: Running) -> None:
    status, body = await loaded.get("/api/v1/analytics/errors?days=2")
    assert status == 200
    assert "ends in '.error' or '.failed'" in body["rule"]
    assert body["errors"] == [
        {"agent": "planner", "event": "tool.call.failed", "events": 1, "errors": 1,
         "error_rate": 1.0},
        {"agent": "coder", "event": "agent.run.completed", "events": 4, "errors": 2,
         "error_rate": 0.5},
        {"agent": None, "event": "session.start", "events": 1, "errors": 0, "error_rate": 0.0},
        {"agent": "planner", "event": "agent.run.completed", "events": 3, "errors": 0,
         "error_rate": 0.0},
    ]  # fmt: skip


async def test_performance(loaded: Running) -> None:
    status, body = await loaded.get("/api/v1/analytics/performance?days=2")
    assert status == 200
    by_agent = {row["agent"]: row for row in body["performance"]}
    assert set(by_agent) == {"coder", "planner"}  # no durations for the unnamed agent
    # percentile_cont interpolates: p95 of [100, 200, 400] is 200 + 0.9 * (400 - 200).
    assert by_agent["planner"] == {
        "agent": "planner", "samples": 3, "p50_ms": 200.0, "p95_ms": 380.0,
        "mean_ms": pytest.approx(700 / 3), "max_ms": 400.0,
    }  # fmt: skip
    assert by_agent["coder"] == {
        "agent": "coder", "samples": 3, "p50_ms": 500.0, "p95_ms": 590.0,
        "mean_ms": pytest.approx(1400 / 3), "max_ms": 600.0,
    }  # fmt: skip


async def test_read_routes_need_a_read_key(loaded: Running) -> None:
    for path in (
        "/api/v1/telemetry/stats",
        "/api/v1/analytics/agents",
        "/api/v1/analytics/errors",
        "/api/v1/analytics/performance",
    ):
        for key in (None, INGEST_KEYS[0], "nope"):
            status, body = await loaded.get(path, key=key)
            assert (status, body["error"]) == (401, "missing or wrong bearer key"), path
    for days in ("0", "x", "-1", "100000"):
        status, body = await loaded.get(f"/api/v1/telemetry/stats?days={days}")
        assert status == 400, days
        assert "days must be" in body["error"]


async def test_days_must_be_a_short_run_of_ascii_digits(loaded: Running) -> None:
    """str.isdigit() takes all of these, int() refuses most of them: a 400, never a 500."""
    for days in ("²", "٣", "５", "1" * 5000, "7\n", " 7"):
        for path in ("/api/v1/telemetry/stats", "/api/v1/analytics/errors"):
            status, body = await loaded.get(f"{path}?days={quote(days)}")
            assert (status, body["error"]) == (400, "days must be a whole number from 1 to 90")


async def test_health_needs_no_key_and_reports_migrations(server: Running) -> None:
    status, body = await server.get("/api/v1/telemetry/health", key=None)
    assert status == 200
    assert body["status"] == "ok"
    assert body["database"] == "ok"
    assert body["migrations"]["current"] == body["migrations"]["latest"] >= 4
    assert body["storage"] == "plain"


async def test_health_on_a_newer_database_says_so(server: Running, db: asyncpg.Connection) -> None:
    """A database a newer server migrated used to be reported as "migrations pending",
    sending the operator to migrate a database this server cannot migrate."""
    await db.execute("INSERT INTO schema_migrations VALUES (999, '0999_future.sql', 'x')")
    status, body = await server.get("/api/v1/telemetry/health", key=None)
    assert status == 503
    assert body["status"] == "database is newer than this server: upgrade the server"
    assert body["migrations"]["current"] == 999 > body["migrations"]["latest"]
    # One version behind instead: that is what "migrations pending" means.
    latest = body["migrations"]["latest"]
    await db.execute("DELETE FROM schema_migrations WHERE version >= $1", latest)
    status, body = await server.get("/api/v1/telemetry/health", key=None)
    assert (status, body["status"]) == (503, "migrations pending")
