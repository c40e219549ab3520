"""Smoke test of the flush benchmark: it runs and its figures add up."""

from __future__ import annotations

from bench.upload_flush import run


def test_upload_flush_bench_quick() -> None:
    result = run(quick=True)
    assert result["events_sent"] == result["events"] == result["backend_events"]
    assert result["batches"] == result["events"] // 100
    assert result["peak_rss_mib"] > 0
    assert result["backend_20ms_events_per_second"] > 0
    assert result["backend_20ms_bound_per_second"] == 100 / 0.020
