"""The whole way: the real daemon, `http` sender, upload enabled → `flush` → PostgreSQL,
then `forget` → the server erases that anonymous id."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from pathlib import Path
from typing import Any

import asyncpg
from server_helpers import INGEST_KEYS, READ_KEY, serve

from agent_telemetry_server.testing import free_port
from tests.conftest import DaemonFactory
from tests.daemon_process import DaemonProcess
from tests.fakes import upload_helpers
from tests.test_agent_analytics import api
from tests.test_answered_models import ANSWERED, send_azure_calls


def _fetch(database_url: str, sql: str) -> list[asyncpg.Record]:
    async def go() -> list[asyncpg.Record]:
        conn = await asyncpg.connect(database_url)
        try:
            return list(await conn.fetch(sql))
        finally:
            await conn.close()

    return asyncio.run(go())


def _read(url: str, path: str) -> Any:
    request = urllib.request.Request(url + path, headers={"Authorization": f"Bearer {READ_KEY}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def _uploading_daemon(daemon_factory: DaemonFactory, url: str, **env: str) -> DaemonProcess:
    """A daemon that sends to the server at `url` with an ingest key, upload enabled."""
    daemon = daemon_factory(
        {
            **upload_helpers.FAST,
            "AGENT_TELEMETRY_SENDER": "http",
            "TELEMETRY_ENDPOINT": url,
            "TELEMETRY_API_KEY": INGEST_KEYS[1],
            **env,
        }
    )
    daemon.cli("enable")
    return daemon


def test_daemon_flush_lands_once_and_forget_erases(
    daemon_factory: Any, database_url: str, tmp_path: Path
) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with serve(database_url, tmp_path / "server.log", port):
        daemon = _uploading_daemon(daemon_factory, url, AGENT_TELEMETRY_BATCH_SIZE="100")
        sent = upload_helpers.post_events(daemon, 250, agent="tester")
        report = upload_helpers.flush_json(daemon)
        assert (report["exit_code"], report["events_sent"], report["batches"]) == (0, 250, 3), (
            report,
            daemon.log()[-2000:],
        )
        anonymous_id = daemon.status()["anonymous_id"]
        rows = _fetch(database_url, "SELECT uuid, anonymous_id, agent FROM events")
        assert sorted(str(r["uuid"]) for r in rows) == sorted(sent)  # each exactly once
        assert {(str(r["anonymous_id"]), r["agent"]) for r in rows} == {(anonymous_id, "tester")}

        # Nothing is pending any more: a second flush sends nothing and adds no rows.
        again = upload_helpers.flush_json(daemon)
        assert (again["exit_code"], again["events_sent"]) == (0, 0)
        assert _fetch(database_url, "SELECT count(*) FROM events")[0][0] == 250

        stats = _read(url, "/api/v1/telemetry/stats?days=2")
        assert (stats["events"], stats["unique_anonymous_ids"]) == (250, 1)
        agents = _read(url, "/api/v1/analytics/agents?days=2")["agents"]
        assert [(a["agent"], a["events"], a["errors"]) for a in agents] == [("tester", 250, 0)]
        performance = _read(url, "/api/v1/analytics/performance?days=2")["performance"]
        assert [(p["agent"], p["samples"], p["p50_ms"]) for p in performance] == [
            ("tester", 250, 5.0)
        ]

        forget = json.loads(daemon.cli("forget", "--yes", "--json").stdout)
        assert forget["erasure"]["ok"], forget
        assert anonymous_id in forget["erased_ids"]
        for table in ("events", "rollup_daily", "idempotency_keys"):
            assert _fetch(database_url, f"SELECT count(*) FROM {table}")[0][0] == 0, table
        assert _read(url, "/api/v1/telemetry/stats?days=2")["unique_anonymous_ids"] == 0


def test_the_team_dashboard_names_the_model_and_cost_the_daemon_shows(
    daemon_factory: Any, database_url: str, tmp_path: Path
) -> None:
    """Azure OpenAI calls (a deployment asked for, gpt-4o-2024-08-06 answered) that report
    their cost, one over OTLP and one from a shim: the server's models answer and the
    daemon's models view name the same model with the same calls, tokens and cost. (The
    server does not price tokens, so a reported cost is what both can show.)"""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with serve(database_url, tmp_path / "server.log", port):
        daemon = _uploading_daemon(daemon_factory, url, AGENT_TELEMETRY_RATE_LIMIT="off")
        send_azure_calls(daemon, cost_usd=0.004)
        report = upload_helpers.flush_json(daemon)
        assert report["exit_code"] == 0, report

        def models(rows: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
            keys = ("model", "calls", "input_tokens", "output_tokens")
            return [(*(row[key] for key in keys), round(row["cost_usd"], 6)) for row in rows]

        expected = [(ANSWERED, 2, 2000, 400, 0.008)]
        team = _read(url, "/api/v1/analytics/models?days=30")["models"]
        assert models(team) == expected
        local = api(daemon, "/dashboard/api/models?since=24h")["models"]
        assert models(local) == expected
