"""The server benchmarks run end to end at a tiny size and print their tables."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from agent_telemetry_server.testing import TemporaryPostgres
from bench import server_dashboard

BENCH = Path(__file__).resolve().parents[2] / "bench" / "server_ingest.py"


def test_bench_quick_run(postgres: TemporaryPostgres, capsys: pytest.CaptureFixture[str]) -> None:
    spec = importlib.util.spec_from_file_location("server_ingest_bench", BENCH)
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    results = bench.run(quick=True, database_url=postgres.dsn())
    assert [(r["events"], r.get("replicas")) for r in results] == [
        (2_000, 1),
        (2_000, 2),
        (2_000, None),
    ]
    assert all(r["seconds"] > 0 for r in results)
    out = capsys.readouterr().out
    assert "events/s" in out and "asyncpg copy_records_to_table" in out
    assert "2 serve processes" in out


def test_dashboard_bench_quick_run(
    postgres: TemporaryPostgres, capsys: pytest.CaptureFixture[str]
) -> None:
    result = server_dashboard.run(quick=True, database_url=postgres.dsn())
    timed = {
        r["name"].split("?")[0].removeprefix("GET ") for r in result["rows"] if r["unit"] == "ms"
    }
    assert set(server_dashboard.ENDPOINTS) <= timed
    assert all(r["value"] > 0 for r in result["rows"] if r["unit"] == "ms")
    assert result["seeded"]["events"] > 50_000
    assert "/api/v1/analytics/models?days=30" in capsys.readouterr().out
