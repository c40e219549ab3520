"""The dashboard benchmark runs end to end at tiny sizes (figures are not checked)."""

from __future__ import annotations

from bench import dashboard_queries


def test_dashboard_bench_smoke() -> None:
    """run(quick=True) seeds, folds and times every endpoint, and reports each one."""
    report = dashboard_queries.run(quick=True)
    assert report["events"] == 2_000
    assert set(report["endpoints"]) >= {"all", "summary", "timeseries", "durations"}
    for row in report["endpoints"].values():
        assert set(row) == {"all_time_ms", "last_7d_ms", "one_agent_ms", "with_tail_ms"}
