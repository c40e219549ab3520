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
from agent_telemetryd.store.database import connect, open_buffer
from agent_telemetryd.store.metric_cells import GROWTH_COLUMNS
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


def buffer(path: Path, points: list[tuple] = POINTS) -> sqlite3.Connection:
    conn = open_buffer(path)
    add_points(conn, points)
    return conn


def add_points(conn: sqlite3.Connection, points: list[tuple], prefix: str = "u") -> None:
    conn.execute("BEGIN")
    conn.executemany(
        "INSERT INTO events (uuid, event, ts_ms, received_ms, properties, agent, pid,"
        " transport, consent, upload, anonymous_id, daemon_version)"
        " VALUES (?, ?, ?, ?, ?, 'agent', 1, 'otlp', 'local', 'local', 'anon', 't')",
        [
            (f"{prefix}{i}", name, ms, ms, json.dumps(props))
            for i, (ms, name, props) in enumerate(points)
        ],
    )
    conn.execute("COMMIT")


def fold_some(conn: sqlite3.Connection, fold: int | None, times: int = 1) -> None:
    """Fold every event (None), none (0), or `fold` events `times` times: the views must
    read the same whatever part of the buffer is folded."""
    if fold is None:
        analytics_fold.fold_all(conn)
        return
    for _ in range(times if fold else 0):
        conn.execute("BEGIN IMMEDIATE")
        analytics_fold.fold(conn, fold)
        conn.execute("COMMIT")


def metrics(conn: sqlite3.Connection, f: Filters) -> dict[str, list[list[float]]]:
    found = views.read_agent_view("metrics", conn, AgentQuery(f))
    return {series["name"]: series["points"] for series in found["series"]}


@pytest.mark.parametrize("fold", [0, 5, None])
def test_each_kind_of_metric_per_hour(tmp_path: Path, fold: int | None) -> None:
    conn = buffer(tmp_path / "b.sqlite3")
    fold_some(conn, fold)
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


# Three runs of a command-line agent in one hour, each a process counting from zero (its
# own start time): 30, then 25 (a new start), then 10 and 18 (a new start), then 4 (the
# same start but lower: a reset). Added in the hour: 30 + 25 + 18 + 4 = 77. A cumulative
# histogram restarting likewise: sums 6 over 3, then 2 over 1 and 5 over 2 after its
# restart: 11 over 5, mean 2.2.
RESTARTS = [
    point(3, "runs.tokens", "sum", "cumulative", value=30, start_time="p1"),
    point(9, "runs.tokens", "sum", "cumulative", value=25, start_time="p2"),
    point(20, "runs.tokens", "sum", "cumulative", value=10, start_time="p3"),
    point(21, "runs.tokens", "sum", "cumulative", value=18, start_time="p3"),
    point(40, "runs.tokens", "sum", "cumulative", value=4, start_time="p3"),
    point(5, "runs.seconds", "histogram", "cumulative", sum=6.0, count=3, start_time="p1"),
    point(30, "runs.seconds", "histogram", "cumulative", sum=2.0, count=1, start_time="p2"),
    point(50, "runs.seconds", "histogram", "cumulative", sum=5.0, count=2, start_time="p2"),
    # The next hour: one more point of the last run, 4 -> 9.
    point(65, "runs.tokens", "sum", "cumulative", value=9, start_time="p3"),
]


@pytest.mark.parametrize("fold", [0, 1, 2, 4, None])
def test_a_counter_restarting_within_a_bucket_keeps_what_each_run_counted(
    tmp_path: Path, fold: int | None
) -> None:
    """Every restart inside an hour is counted, not only the last run's total, folded in
    chunks or not, by hour, by day and by minute."""
    conn = buffer(tmp_path / "b.sqlite3", RESTARTS)
    fold_some(conn, fold, times=len(RESTARTS))
    hours = metrics(conn, Filters(bucket="hour"))
    assert hours["runs.tokens"] == [[H, 77.0], [H + HOUR, 5.0]]
    assert hours["runs.seconds"] == [[H, 2.2]]
    assert metrics(conn, Filters(bucket="day"))["runs.tokens"] == [[H, 82.0]]
    minutes = metrics(conn, Filters(since_ms=H, until_ms=H + 2 * HOUR, bucket="minute"))
    assert sum(value for _, value in minutes["runs.tokens"]) == 82.0


# Two processes exporting one series at once, their points interleaved in one hour: A
# counts 10 then 20, B 5 then 8. Added: 20 + 8 = 28, not each switch taken for a restart.
CONCURRENT = [
    point(1, "both.tokens", "sum", "cumulative", value=10, start_time="a"),
    point(2, "both.tokens", "sum", "cumulative", value=5, start_time="b"),
    point(3, "both.tokens", "sum", "cumulative", value=20, start_time="a"),
    point(4, "both.tokens", "sum", "cumulative", value=8, start_time="b"),
]


LATER_CONCURRENT = [
    point(61, "both.tokens", "sum", "cumulative", value=9, start_time="b"),
    point(62, "both.tokens", "sum", "cumulative", value=26, start_time="a"),
    point(63, "both.tokens", "sum", "cumulative", value=4, start_time="c"),
]


@pytest.mark.parametrize("fold", [0, 1, 3, None])
def test_two_processes_counting_one_series_at_once_add_up(tmp_path: Path, fold: int | None) -> None:
    conn = buffer(tmp_path / "b.sqlite3", CONCURRENT)
    fold_some(conn, fold)
    assert metrics(conn, Filters(bucket="hour"))["both.tokens"] == [[H, 28.0]]
    # Both go on in the next hour (a: 20 -> 26, b: 8 -> 9), and a third process starts
    # (4): 6 + 1 + 4 = 11 there, each counted from where it ended, not from the start.
    add_points(conn, LATER_CONCURRENT, prefix="n")
    assert metrics(conn, Filters(bucket="hour"))["both.tokens"] == [[H, 28.0], [H + HOUR, 11.0]]
    assert metrics(conn, Filters(since_ms=H + HOUR, bucket="hour"))["both.tokens"] == [
        [H + HOUR, 11.0]
    ]
    assert metrics(conn, Filters(bucket="day"))["both.tokens"] == [[H, 39.0]]


# An up-down counter (a cumulative sum that is not monotonic: sessions open) goes 5, 8, 3
# in hour 0 and 6 in hour 1: it changed by +3 in hour 0 (from 0 at its start) and +3 in
# hour 1. Going down is a change, not a reset.
UP_DOWN = [
    point(5, "sessions", "sum", "cumulative", value=5, start_time="p1", monotonic=False),
    point(20, "sessions", "sum", "cumulative", value=8, start_time="p1", monotonic=False),
    point(40, "sessions", "sum", "cumulative", value=3, start_time="p1", monotonic=False),
    point(70, "sessions", "sum", "cumulative", value=6, start_time="p1", monotonic=False),
]


@pytest.mark.parametrize("fold", [0, 2, None])
def test_an_up_down_counter_going_down_is_a_change_not_a_reset(
    tmp_path: Path, fold: int | None
) -> None:
    conn = buffer(tmp_path / "b.sqlite3", UP_DOWN)
    fold_some(conn, fold)
    assert metrics(conn, Filters(bucket="hour"))["sessions"] == [[H, 3.0], [H + HOUR, 3.0]]
    assert metrics(conn, Filters(since_ms=H + HOUR, bucket="hour"))["sessions"] == [[H + HOUR, 3.0]]
    minutes = metrics(conn, Filters(since_ms=H, until_ms=H + 2 * HOUR, bucket="minute"))
    assert [value for _, value in minutes["sessions"]] == [5.0, 3.0, -5.0, 3.0]


def test_hours_folded_before_the_upgrade_are_recounted_with_their_restarts(
    tmp_path: Path,
) -> None:
    """A buffer whose hours were folded by a version that kept only each hour's last
    point: read as it is (`stats` with the old daemon still running), then migrated, both
    count every restart."""
    path = tmp_path / "b.sqlite3"
    conn = buffer(path, RESTARTS)
    analytics_fold.fold_all(conn)
    for column, _ in GROWTH_COLUMNS:
        conn.execute(f"ALTER TABLE agent_metric_hours DROP COLUMN {column}")
    conn.execute("PRAGMA user_version = 12")
    conn.close()
    reader = connect(path, readonly=True)
    views.without_rollups(reader)
    assert metrics(reader, Filters(bucket="hour"))["runs.tokens"] == [[H, 77.0], [H + HOUR, 5.0]]
    reader.close()
    upgraded = open_buffer(path)
    assert metrics(upgraded, Filters(bucket="hour"))["runs.tokens"] == [[H, 77.0], [H + HOUR, 5.0]]
    assert metrics(upgraded, Filters(bucket="hour"))["runs.seconds"] == [[H, 2.2]]


def test_two_runs_of_an_agent_exporting_cumulative_counters_add_up(
    daemon: DaemonProcess,
) -> None:
    """A command-line agent run twice, each run a process of its own whose OpenTelemetry
    SDK counts from zero and exports once as it exits: 1200 tokens, then 85. The chart
    says 1285 were counted, not the last run's 85."""
    exporters = http_exporters(daemon.http_url())
    resource = Resource.create({"service.name": "cli-agent"})
    for added in (1200, 85):
        exporter = exporters.metrics(
            preferred_temporality={Counter: AggregationTemporality.CUMULATIVE}
        )
        reader = PeriodicExportingMetricReader(exporter, export_interval_millis=3_600_000)
        meters = MeterProvider([reader], resource=resource, shutdown_on_exit=False)
        try:
            counter = meters.get_meter("agent").create_counter("run.tokens", unit="{token}")
            counter.add(added, {"gen_ai.request.model": "gpt-4o"})
        finally:
            meters.shutdown()
    found = ApiClient(daemon.api_socket).json("GET", "/dashboard/api/metrics?since=24h")
    (series,) = [s for s in found["series"] if s["name"] == "run.tokens"]
    assert sum(value for _, value in series["points"]) == 1285
