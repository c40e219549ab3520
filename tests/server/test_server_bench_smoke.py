"""The ingest benchmark runs end to end at a tiny size and prints its table."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from agent_telemetry_server.testing import TemporaryPostgres

BENCH = Path(__file__).resolve().parents[2] / "bench" / "server_ingest.py"


def test_bench_quick_run(postgres: TemporaryPostgres, capsys: pytest.CaptureFixture[str]) -> None:
    spec = importlib.util.spec_from_file_location("server_ingest_bench", BENCH)
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    results = bench.run(quick=True, database_url=postgres.dsn())
    assert [r["events"] for r in results] == [2_000, 2_000]
    assert all(r["seconds"] > 0 for r in results)
    out = capsys.readouterr().out
    assert "events/s" in out and "asyncpg copy_records_to_table" in out
