"""OTLP metrics as chart series: cumulative sums become what was added per bucket, deltas
are summed, gauges and histograms averaged — from points stored in a real buffer, folded
or not, and from OpenTelemetry's own SDK through the real daemon."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.metrics import Counter, MeterProvider
from opentelemetry.sdk.metrics.export import AggregationTemporality, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource

from agent_telemetryd.cli.api_client import ApiClient
from agent_telemetryd.dashboard import views
from agent_telemetryd.dashboard.agent_views import AgentQuery
from agent_telemetryd.dashboard.filters import Filters
from agent_telemetryd.store import analytics_fold
from agent_telemetryd.store.database import open_buffer
from tests.daemon_process import DaemonProcess
from tests.test_otlp_receiver import http_exporters

H = 1_767_225_600_000  # 2026-01-01T00:00Z
HOUR = 3_600_000
MINUTE = 60_000


def point(minute: int, name: str, kind: str, temporality: str | None, **values: Any) -> tuple:
    props: dict[str, Any] = {"metric.type": kind, "model": "m"}
    if temporality:
        props["metric.temporality"] = temporality
    props.update({f"metric.{key}": value for key, value in values.items()})
    return (H + minute * MINUTE, name, props)


# A cumulative counter from two processes (two start times): 10, 25 in hour 0; 40 in hour
# 1; the process restarts (new start time) and counts 5 in hour 2. Added per hour: 25,
# 15, 5. A delta counter: 3 + 4 in hour 0, 10 in hour 2. A gauge: 2 and 4 in hour 0.
# A delta histogram: sums 3.0 and 1.0 over counts 2 and 2 in hour 1: mean 1.0.
POINTS = [
    point(10, "tokens", "sum", "cumulative", value=10, start_time="p1"),
    point(40, "tokens", "sum", "cumulative", value=25, start_time="p1"),
    point(70, "tokens", "sum", "cumulative", value=40, start_time="p1"),
    point(130, "tokens", "sum", "cumulative", value=5, start_time="p2"),
    point(5, "tokens.delta", "sum", "delta", value=3),
    point(50, "tokens.delta", "sum", "delta", value=4),
    point(125, "tokens.delta", "sum", "delta", value=10),
    point(1, "queue", "gauge", None, value=2),
    point(2, "queue", "gauge", None, value=4),
    point(61, "latency", "histogram", "delta", sum=3.0, count=2),
    point(62, "latency", "histogram", "delta", sum=1.0, count=2),
]
EXPECTED = {
    "tokens": [[H, 25.0], [H + HOUR, 15.0], [H + 2 * HOUR, 5.0]],
    "tokens.delta": [[H, 7.0], [H + 2 * HOUR, 10.0]],
    "queue": [[H, 3.0]],
    "latency": [[H + HOUR, 1.0]],
}


def buffer(path: Path) -> sqlite3.Connection:
    conn = open_buffer(path)
    conn.execute("BEGIN")
    conn.executemany(
        "INSERT INTO events (uuid, event, ts_ms, received_ms, properties, agent, pid,"
        " transport, consent, upload, anonymous_id, daemon_version)"
        " VALUES (?, ?, ?, ?, ?, 'agent', 1, 'otlp', 'local', 'local', 'anon', 't')",
        [(f"u{i}", name, ms, ms, json.dumps(props)) for i, (ms, name, props) in enumerate(POINTS)],
    )
    conn.execute("COMMIT")
    return conn


def metrics(conn: sqlite3.Connection, f: Filters) -> dict[str, list[list[float]]]:
    found = views.read_agent_view("metrics", conn, AgentQuery(f))
    return {series["name"]: series["points"] for series in found["series"]}


@pytest.mark.parametrize("fold", [0, 5, None])
def test_each_kind_of_metric_per_hour(tmp_path: Path, fold: int | None) -> None:
    conn = buffer(tmp_path / "b.sqlite3")
    if fold is None:
        analytics_fold.fold_all(conn)
    elif fold:
        conn.execute("BEGIN IMMEDIATE")
        analytics_fold.fold(conn, fold)
        conn.execute("COMMIT")
    assert metrics(conn, Filters(bucket="hour")) == EXPECTED
    # From hour 1 on: the cumulative counter's first amount counts from its last point
    # before the range (25), not from zero.
    later = metrics(conn, Filters(since_ms=H + HOUR, bucket="hour"))
    assert later["tokens"] == [[H + HOUR, 15.0], [H + 2 * HOUR, 5.0]]
    # Minutes (a range of a few hours): the same amounts, where they happened.
    minutes = metrics(conn, Filters(since_ms=H, until_ms=H + 3 * HOUR, bucket="minute"))
    assert minutes["tokens"] == [
        [H + 10 * MINUTE, 10.0],
        [H + 40 * MINUTE, 15.0],
        [H + 70 * MINUTE, 15.0],
        [H + 130 * MINUTE, 5.0],
    ]
    assert sum(value for _, value in minutes["tokens.delta"]) == 17.0


def test_a_metric_is_found_by_name_and_agent(tmp_path: Path) -> None:
    conn = buffer(tmp_path / "b.sqlite3")
    assert list(metrics(conn, Filters(event="queue", bucket="hour"))) == ["queue"]
    assert metrics(conn, Filters(agent="someone-else", bucket="hour")) == {}


def test_the_sdks_cumulative_and_delta_counters_through_the_daemon(
    daemon: DaemonProcess,
) -> None:
    """A counter added to twice (1200, then 85), exported once cumulative and once delta
    by OpenTelemetry's own SDK: both series say 1285 were added."""
    exporters = http_exporters(daemon.http_url())
    resource = Resource.create({"service.name": "sdk-agent"})
    for name, temporality in (
        ("tokens.cumulative", AggregationTemporality.CUMULATIVE),
        ("tokens.delta", AggregationTemporality.DELTA),
    ):
        exporter = exporters.metrics(preferred_temporality={Counter: temporality})
        reader = PeriodicExportingMetricReader(exporter, export_interval_millis=3_600_000)
        meters = MeterProvider([reader], resource=resource, shutdown_on_exit=False)
        try:
            counter = meters.get_meter("agent").create_counter(name, unit="{token}")
            counter.add(1200, {"gen_ai.request.model": "gpt-4o"})
            counter.add(85, {"gen_ai.request.model": "gpt-4o"})
        finally:
            meters.shutdown()
    found = ApiClient(daemon.api_socket).json("GET", "/dashboard/api/metrics?since=24h")
    by_name = {series["name"]: series for series in found["series"]}
    for name in ("tokens.cumulative", "tokens.delta"):
        series = by_name[name]
        assert (series["agent"], series["unit"], series["type"]) == ("sdk-agent", "{token}", "sum")
        assert sum(value for _, value in series["points"]) == 1285
    # Counters are not LLM calls, whatever model their attributes name.
    models = ApiClient(daemon.api_socket).json("GET", "/dashboard/api/models?since=24h")
    assert models["models"] == []
