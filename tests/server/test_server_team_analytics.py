"""The team analytics endpoints against the hand-computed three-installation fixture;
erasure, retention and the upgrade backfill of the models/tools/durations rollups."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import team_fixture as fx
from server_helpers import INGEST_KEYS, Running, make_batch, make_event

from agent_telemetry_server import migrate
from agent_telemetry_server.ingest import ROLLUP_TABLES, ROLLUP_TABLES_BY_ID
from agent_telemetry_server.retention import run_retention
from agent_telemetry_server.testing import TemporaryPostgres, create_database


@pytest.fixture
async def loaded(server: Running) -> Running:
    await fx.load(server)
    return server


async def read(server: Running, view: str, days: int = 2) -> dict[str, Any]:
    asked_on = datetime.now(UTC).date().isoformat()
    status, body = await server.get(f"/api/v1/analytics/{view}?days={days}")
    assert status == 200, body
    # A read that straddles midnight may answer for either day.
    assert body["to"] in {asked_on, datetime.now(UTC).date().isoformat()}
    return dict(body)


async def test_overview_installs_events_and_error_rate(loaded: Running) -> None:
    body = await read(loaded, "overview")
    assert body["totals"] == {
        "events": 9,
        "errors": 2,
        "error_rate": fx.ERROR_RATE,
        "installs": 3,
        "agents": 2,
        "event_types": 4,
    }
    assert [(d["day"], d["installs"], d["events"], d["errors"]) for d in body["by_day"]] == [
        (day, fx.INSTALLS_BY_DAY[day], fx.EVENTS_BY_DAY[day], fx.ERRORS_BY_DAY[day])
        for day in (fx.D0, fx.D1)
    ]
    assert body["by_day"][1]["error_rate"] == round(2 / 6, 6)
    # A longer window lists every day, the empty ones as zeros.
    week = await read(loaded, "overview", days=7)
    assert len(week["by_day"]) == 7
    assert week["by_day"][0] == {
        "day": (datetime.now(UTC).date() - timedelta(days=6)).isoformat(),
        "events": 0,
        "errors": 0,
        "error_rate": None,
        "installs": 0,
    }


async def test_models_tokens_and_reported_cost(loaded: Running) -> None:
    body = await read(loaded, "models")
    shown = {m["model"]: {k: m[k] for k in fx.MODELS["gpt-x"]} for m in body["models"]}
    assert shown == fx.MODELS
    by_model = {m["model"]: m for m in body["models"]}
    assert by_model["gpt-x"]["duration"] == {
        "samples": 2, "p50_ms": 400.0, "p95_ms": 800.0, "max_ms": 800.0
    }  # fmt: skip
    assert by_model["claude-y"]["duration"]["samples"] == 1  # C's call had no duration
    assert "does not price tokens" in body["cost_rule"]
    days = {(d["day"], d["model"]): (d["calls"], d["cost_usd"]) for d in body["by_day"]}
    assert days == {
        (fx.D0, "gpt-x"): (1, 0.012),
        (fx.D0, "claude-y"): (1, 0.05),
        (fx.D1, "gpt-x"): (1, 0.006),
        (fx.D1, "claude-y"): (1, None),  # C reported no cost: unknown, not zero
    }


async def test_cost_per_day_and_agent(loaded: Running) -> None:
    body = await read(loaded, "cost")
    assert body["total"] == {
        "calls": 4,
        "input_tokens": 4500,
        "output_tokens": 700,
        "cost_usd": fx.TOTAL_COST_USD,
        "costed_calls": 3,
        "uncosted_calls": 1,
    }
    assert {d["day"]: d["cost_usd"] for d in body["by_day"]} == fx.COST_BY_DAY
    agents = {a["agent"]: (a["cost_usd"], a["uncosted_calls"]) for a in body["by_agent"]}
    assert agents == {"planner": (0.018, 0), "coder": (0.05, 1)}


async def test_tools_and_durations(loaded: Running) -> None:
    tools = (await read(loaded, "tools"))["tools"]
    assert {t["tool"]: (t["calls"], t["errors"], t["error_rate"]) for t in tools} == fx.TOOLS
    durations = await read(loaded, "durations")
    assert "within 5%" in durations["rule"]
    assert {
        d["event"]: (d["samples"], d["p50_ms"], d["p95_ms"]) for d in durations["durations"]
    } == fx.DURATIONS


async def test_every_view_needs_a_read_key(loaded: Running) -> None:
    for view in ("overview", "models", "cost", "tools", "durations"):
        for key in (None, INGEST_KEYS[0], "nonsense"):
            status, body = await loaded.get(f"/api/v1/analytics/{view}", key=key)
            assert (status, body["error"]) == (401, "missing or wrong bearer key"), (view, key)


async def test_odd_values_are_ignored_not_fatal(server: Running) -> None:
    """Wrong types and absurd numbers in the vocabulary never fail a batch."""
    odd = [
        {"model": 5, "input_tokens": "many", "cost_usd": "1.00"},
        {"model": "", "tool": ["x"], "output_tokens": -3},
        {"model": "m\u0001 ok ", "input_tokens": 1e30, "cost_usd": -1, "duration_ms": 1e300},
        {"gen_ai.response.model": None, "model": "fallback", "tokens_out": 12.6},
    ]
    status, body, _ = await server.post_batch(make_batch([make_event(properties=p) for p in odd]))
    assert (status, body["accepted"]) == (200, 4)
    # Two days: the events are stamped five minutes ago, which is yesterday just after midnight.
    models = (await read(server, "models", days=2))["models"]
    assert [(m["model"], m["input_tokens"], m["output_tokens"], m["cost_usd"]) for m in models] == [
        ("fallback", 0, 13, None),
        ("m ok", 0, 0, None),
    ]


def _run_of_an_agent() -> list[dict[str, Any]]:
    """An agent's own span around its two chat calls; it names their model and carries
    their summed tokens and cost, as the GenAI conventions have it."""
    usage = {"gen_ai.request.model": "gpt-x", "gen_ai.usage.output_tokens": 10}
    return [
        make_event("invoke_agent planner", {
            "gen_ai.operation.name": "invoke_agent", "gen_ai.usage.input_tokens": 300,
            "cost_usd": 0.01, "duration_ms": 9000, **usage}),
        make_event("chat gpt-x", {
            "gen_ai.operation.name": "chat", "gen_ai.usage.input_tokens": 100,
            "cost_usd": 0.004, "duration_ms": 300, **usage}),
        make_event("chat gpt-x", {
            "gen_ai.operation.name": "chat", "gen_ai.usage.input_tokens": 200,
            "cost_usd": 0.006, "duration_ms": 400, **usage}),
    ]  # fmt: skip


async def _gpt_x(server: Running) -> tuple[Any, ...]:
    (model,) = (await read(server, "models"))["models"]
    duration = model["duration"]
    return (model["calls"], model["input_tokens"], model["cost_usd"], duration["samples"],
            duration["max_ms"])  # fmt: skip


async def test_an_agents_own_span_is_not_one_more_call(
    server: Running, db: asyncpg.Connection
) -> None:
    assert (await server.post_batch(make_batch(_run_of_an_agent())))[0] == 200
    assert await _gpt_x(server) == (2, 300, 0.01, 2, 400.0)
    # The span still counts as an event, with its duration by event name.
    durations = {d["event"]: d["samples"] for d in (await read(server, "durations"))["durations"]}
    assert durations["invoke_agent planner"] == 1


async def test_the_upgrade_takes_agent_spans_out_of_what_the_old_rule_counted(
    server: Running, db: asyncpg.Connection
) -> None:
    migrations = Path(migrate.__file__).parent / "migrations"
    old = (migrations / "0005_agent_rollups.sql").read_text()
    start = old.index("CREATE FUNCTION telemetry_model")
    old_rule = old[start : old.index("$$;", start) + 3].replace("CREATE", "CREATE OR REPLACE", 1)
    await db.execute(old_rule)
    assert (await server.post_batch(make_batch(_run_of_an_agent())))[0] == 200
    assert await _gpt_x(server) == (3, 600, 0.02, 3, 9000.0)  # the span counted as a call

    async with db.transaction():
        await db.execute((migrations / "0007_agent_spans_not_calls.sql").read_text())
    assert await _gpt_x(server) == (2, 300, 0.01, 2, 400.0)
    # Erasure now takes out exactly what is left: nothing of the installation remains.
    (anonymous_id,) = {r["anonymous_id"] for r in await db.fetch("SELECT anonymous_id FROM events")}
    assert (await server.delete_user(str(anonymous_id)))[0] == 200
    assert not await db.fetchval("SELECT count(*) FROM rollup_models_daily")
    assert not await db.fetchval("SELECT count(*) FROM rollup_durations_daily")


async def test_erasure_and_retention_reach_every_rollup(
    loaded: Running, db: asyncpg.Connection
) -> None:
    status, body = await loaded.delete_user(fx.C)
    assert status == 200
    # C's rows: 2 in rollup_daily, 1 installation-day, 1 model, no tool; its one duration
    # is subtracted from the shared histogram.
    assert body["rollup_rows_deleted"] == 4
    models = {m["model"]: m for m in (await read(loaded, "models"))["models"]}
    assert (models["claude-y"]["calls"], models["claude-y"]["uncosted_calls"]) == (1, 0)
    assert (await read(loaded, "overview"))["totals"]["installs"] == 2
    # B's durations come out of the shared histograms, A's stay.
    assert (await loaded.delete_user(fx.B))[0] == 200
    durations = {d["event"]: d for d in (await read(loaded, "durations"))["durations"]}
    assert {e: (d["samples"], d["p50_ms"], d["p95_ms"]) for e, d in durations.items()} == {
        "llm.call": (2, 400.0, 800.0),
        "tool.call": (1, 120.0, 120.0),
    }
    tools = {t["tool"]: t["duration"]["samples"] for t in (await read(loaded, "tools"))["tools"]}
    assert tools == {"search": 1}
    assert not await db.fetchval(
        "SELECT count(*) FROM rollup_durations_daily WHERE kind = 'model' AND name = 'claude-y'"
    )
    for table in ROLLUP_TABLES_BY_ID:
        for gone in (fx.B, fx.C):
            assert not await db.fetchval(
                f"SELECT count(*) FROM {table} WHERE anonymous_id = $1", gone
            ), table

    # Retention, a one-day window at noon tomorrow: yesterday's rows go from every rollup,
    # and today's histograms too, since some of today's raw events are gone.
    noon_tomorrow = fx.TODAY + timedelta(days=1, hours=12)
    result = await run_retention(db, retention_days=1, now=noon_tomorrow)
    assert result.rollup_rows_deleted > 0
    for table in ROLLUP_TABLES_BY_ID:
        days = await db.fetch(f"SELECT DISTINCT day FROM {table}")
        assert {r["day"].isoformat() for r in days} <= {fx.D1}, table
    assert not await db.fetchval("SELECT count(*) FROM rollup_durations_daily")


async def test_upgrade_backfills_what_ingest_would_have_rolled_up(
    loaded: Running,
    db: asyncpg.Connection,
    postgres: TemporaryPostgres,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A database at version 4 with events in it, upgraded: the new rollups hold exactly
    what live ingest put into them for the same events."""
    live = {t: await _dump(db, t) for t in ROLLUP_TABLES}
    name = "upgrade_" + datetime.now(UTC).strftime("%H%M%S%f")
    await create_database(postgres.dsn(), name)
    old = await asyncpg.connect(postgres.dsn(name))
    try:
        everything = migrate.discover()
        monkeypatch.setattr(migrate, "discover", lambda: [m for m in everything if m.version <= 4])
        await migrate.migrate(old)
        monkeypatch.setattr(migrate, "discover", lambda: everything)
        # What a version-4 database held: raw events and rollup_daily.
        for table in ("events", "rollup_daily"):
            rows = await db.fetch(f"SELECT * FROM {table}")
            await old.copy_records_to_table(
                table, records=[tuple(r) for r in rows], columns=list(rows[0].keys())
            )
        assert await migrate.migrate(old) == [
            "0005_agent_rollups.sql",
            "0006_token_totals_numeric.sql",
            "0007_agent_spans_not_calls.sql",
        ]
        for table in ROLLUP_TABLES[1:]:
            assert await _dump(old, table) == live[table], table
    finally:
        await old.close()


async def _dump(conn: asyncpg.Connection, table: str) -> list[tuple[Any, ...]]:
    return sorted(tuple(r) for r in await conn.fetch(f"SELECT * FROM {table}"))
