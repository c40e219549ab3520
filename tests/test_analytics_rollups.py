"""The agent analytics' rollups on a real SQLite buffer: the views read the same whether
nothing, part or all of the buffer is folded; deleted events leave the rollups as if they
had never come; the copies of shared rules agree; an old buffer opened read-only reads."""

from __future__ import annotations

import json
import random
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from agent_telemetryd.analytics.prices import price_book
from agent_telemetryd.dashboard import agent_views, views
from agent_telemetryd.dashboard.agent_views import AgentQuery
from agent_telemetryd.dashboard.filters import Filters
from agent_telemetryd.store import analytics_facts, analytics_fold
from agent_telemetryd.store.dashboard_sql import bucket_sql
from agent_telemetryd.store.database import connect, open_buffer
from agent_telemetryd.store.migrations import MIGRATIONS

H = 1_767_225_600_000  # 2026-01-01T00:00:00Z
HOUR = 3_600_000
MODELS = ("gpt-4o", "claude-sonnet-4-5", "house-model", None)
DEPLOYMENT = "my-gpt4o-prod"
TOOLS = ("search", "fetch", "bash")
# (metric, type, temporality): a metric's points all have the one type it was made with.
METRICS = (
    ("tokens.total", "sum", "cumulative"),
    ("tokens.added", "sum", "delta"),
    ("queue.depth", "gauge", None),
    ("call.seconds", "histogram", "delta"),
    ("call.seconds.total", "histogram", "cumulative"),
)


def workload(seed: int = 3, n: int = 600) -> list[tuple[Any, ...]]:
    """Rows of (received_ms, ts_ms, agent, event, properties, trace, span, parent): LLM
    and tool calls with and without costs, errors and durations; 30 runs whose spans
    arrive shuffled over hours; metric points of every temporality."""
    rng = random.Random(seed)
    rows: list[tuple[Any, ...]] = []
    spans: list[tuple[str, str, str | None, str]] = []
    for run in range(30):
        trace = f"{run:032x}"
        root = f"{run:08x}{0:08x}"
        spans.append((trace, root, None, "agent.run"))
        for child in range(1, rng.randint(2, 8)):
            parent = root if child < 3 else f"{run:08x}{rng.randint(1, child - 1):08x}"
            spans.append((trace, f"{run:08x}{child:08x}", parent, "step"))
    rng.shuffle(spans)
    for i in range(n):
        received = H + i * 37_000  # about six hours
        props: dict[str, Any] = {"i": i}
        roll = rng.random()
        if roll < 0.4:
            model = rng.choice(MODELS)
            if model:
                props["gen_ai.request.model"] = model
            if model == "gpt-4o" and i % 2:
                # Half of them through a deployment, answered by the model.
                props["gen_ai.request.model"] = DEPLOYMENT
                props["gen_ai.response.model"] = model
            if rng.random() < 0.8 or model is None:
                props["gen_ai.usage.input_tokens"] = rng.randint(0, 5000)
                props["gen_ai.usage.output_tokens"] = rng.randint(0, 500)
                if rng.random() < 0.3:
                    props["gen_ai.usage.cache_read.input_tokens"] = rng.randint(0, 3000)
            if rng.random() < 0.3:
                props["cost_usd"] = round(rng.random() / 10, 4)
        elif roll < 0.6:
            props["gen_ai.tool.name"] = rng.choice(TOOLS)
        elif roll < 0.7:
            metric, kind, temporality = rng.choice(METRICS)
            props = {"metric.type": kind, "metric.temporality": temporality}
            props["type"] = rng.choice(("input", "output"))
            props["metric.value" if kind != "histogram" else "metric.sum"] = i * 3
            if kind == "histogram":
                props["metric.count"] = i // 10 + 1
            rows.append(
                (H + i * 37_000, H + i * 37_000, "planner", metric, props, None, None, None)
            )
            continue
        if rng.random() < 0.5:
            props["duration_ms"] = round(rng.lognormvariate(5, 1.2), 1)
        if rng.random() < 0.1:
            props["status"] = "error"
        trace = span = parent = None
        name = rng.choice(("llm.call", "tool.call", "app.step"))
        if spans and rng.random() < 0.4:
            trace, span, parent, name = spans.pop()
            props.setdefault("duration_ms", rng.randint(1, 900))
        agent = rng.choice(("planner", "coder"))
        rows.append(
            (received, received - rng.randint(0, 5000), agent, name, props, trace, span, parent)
        )
    return rows


def insert(conn: sqlite3.Connection, rows: list[tuple[Any, ...]]) -> None:
    start = conn.execute("SELECT coalesce(max(id), 0) FROM events").fetchone()[0]
    conn.execute("BEGIN")
    conn.executemany(
        "INSERT INTO events (uuid, event, ts_ms, received_ms, properties, agent, pid,"
        " transport, consent, upload, anonymous_id, daemon_version, trace_id, span_id,"
        " parent_span_id) VALUES (?, ?, ?, ?, ?, ?, 1, 'unix', 'local', 'local', 'anon',"
        " 'test', ?, ?, ?)",
        [
            (f"u-{start + i}", name, ts, received, json.dumps(props), agent, trace, span, parent)
            for i, (received, ts, agent, name, props, trace, span, parent) in enumerate(rows)
        ],
    )
    conn.execute("COMMIT")


def fold_some(conn: sqlite3.Connection, limit: int) -> None:
    conn.execute("BEGIN IMMEDIATE")
    analytics_fold.fold(conn, limit)
    conn.execute("COMMIT")


FILTERS = (
    Filters(),
    Filters(bucket="hour"),
    Filters(since_ms=H + 2 * HOUR, until_ms=H + 4 * HOUR, bucket="hour"),
    Filters(agent="coder", bucket="hour"),
    Filters(event="llm.call", model="gpt-4o", bucket="hour"),
    Filters(model=DEPLOYMENT, bucket="minute"),
    Filters(tool="search", bucket="day"),
    Filters(bucket="minute"),
)


def every_view(conn: sqlite3.Connection) -> list[Any]:
    """Every agent view under several filters; runs paged to the end in pages of 7."""
    prices = price_book()
    found: list[Any] = []
    for f in FILTERS:
        for name in ("models", "tools", "cost", "metrics"):
            found.append(views.read_agent_view(name, conn, AgentQuery(f, prices)))
        before = None
        while True:
            page = views.read_agent_view("runs", conn, AgentQuery(f, prices, 7, before))
            found.append(page)
            before = page["next"]
            if before is None:
                break
    return found


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> list[Any]:
    conn = open_buffer(tmp_path_factory.mktemp("ref") / "b.sqlite3")
    insert(conn, workload())
    try:
        return every_view(conn)
    finally:
        conn.close()


@pytest.mark.parametrize("folded", [1, 97, 333, None])
def test_folded_or_not_the_views_are_the_same(
    tmp_path: Path, reference: list[Any], folded: int | None
) -> None:
    """Part-folded at several points (spans of one run on both sides of the watermark),
    and all folded (several chunks), every view equals the one read from the events."""
    conn = open_buffer(tmp_path / "b.sqlite3")
    insert(conn, workload())
    if folded is None:
        analytics_fold.fold_all(conn)
        assert analytics_facts.unfolded(conn) == 0
    else:
        fold_some(conn, folded)
    assert _rounded(every_view(conn)) == _rounded(reference)
    assert conn.execute("SELECT count(*) FROM agent_models").fetchone()[0] > 0 or not folded


def test_the_workload_has_what_the_views_show(reference: list[Any]) -> None:
    """The comparison above is not of empty answers."""
    models, tools, cost, metrics, runs = reference[:5]
    assert {m["model"] for m in models["models"]} == {*MODELS}
    house = next(m for m in models["models"] if m["model"] == "house-model")
    assert house["unpriced_calls"] and not house["priced"]  # only its reported costs count
    assert any(m["unpriced_calls"] and m["priced"] for m in models["models"])  # no tokens
    assert {t["tool"] for t in tools["tools"]} == set(TOOLS)
    assert len(cost["series"]) > 3 and metrics["series"]
    assert len(runs["runs"]) == 7 and runs["next"]


def test_deleted_events_leave_the_rollups_as_if_they_never_came(tmp_path: Path) -> None:
    """Retention and eviction delete folded events: the rollups lose exactly them (a run's
    counts, tokens and costs; its start and root are what was seen)."""
    rows = workload()
    conn = open_buffer(tmp_path / "b.sqlite3")
    insert(conn, rows)
    analytics_fold.fold_all(conn)
    cut = H + 3 * HOUR
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("DELETE FROM events WHERE received_ms < ?", (cut,))
    conn.execute("DELETE FROM events WHERE id % 5 = 0")
    conn.execute("COMMIT")
    kept = [row for i, row in enumerate(rows, start=1) if row[0] >= cut and i % 5 != 0]
    fresh = open_buffer(tmp_path / "fresh.sqlite3")
    insert(fresh, kept)
    assert _comparable(every_view(conn)) == _comparable(every_view(fresh))
    assert _all_runs(conn) == _all_runs(fresh) != []
    assert (
        conn.execute("SELECT count(*) FROM agent_facts").fetchone()[0]
        == (
            fresh.execute(
                f"SELECT count(*) FROM ({analytics_facts.facts_select('1', series='attributes')})"
            ).fetchone()[0]
        )
    )
    conn.execute("DELETE FROM events")
    for table in ("agent_facts", "agent_models", "agent_tools", "agent_durations", "agent_runs",
                  "agent_run_models", "agent_metric_hours", "agent_metric_series"):  # fmt: skip
        assert conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0] == 0, table


def test_the_duration_bucket_rule_is_the_dashboards() -> None:
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE t (properties TEXT)")
    values = [0, 0.4, 0.5, 1, 999.4, 999.5, 1004, 1005, 12_345.6, 99_999, 123_456_789]
    conn.executemany(
        "INSERT INTO t VALUES (?)", [(json.dumps({"duration_ms": v}),) for v in values]
    )
    ours = analytics_facts.duration_bucket_sql("json_extract(t.properties, '$.duration_ms')")
    pairs = conn.execute(f"SELECT {bucket_sql('t')}, {ours} FROM t").fetchall()
    assert all(a == b for a, b in pairs) and len(pairs) == len(values)


def test_a_buffer_from_before_these_rollups_reads_the_same_read_only(tmp_path: Path) -> None:
    """A version-8 file (the daemon not restarted since the upgrade), opened read-only as
    `report` and `stats` do: the views come from the events themselves."""
    path = tmp_path / "old.sqlite3"
    old = sqlite3.connect(path, isolation_level=None)
    for script in MIGRATIONS[:8]:
        old.executescript(script)
    old.execute("PRAGMA user_version = 8")
    insert(old, workload(n=200))
    old.close()
    reader = connect(path, readonly=True)
    views.without_rollups(reader)
    before = every_view(reader)
    reader.close()
    upgraded = open_buffer(path)
    analytics_fold.fold_all(upgraded)
    assert _rounded(every_view(upgraded)) == _rounded(before)


def _rounded(found: Any) -> Any:
    """Float sums depend on the order they were added in: compare to 9 digits."""
    if isinstance(found, float):
        return round(found, 9)
    if isinstance(found, dict):
        return {k: _rounded(v) for k, v in found.items() if k != "filters"}
    if isinstance(found, list):
        return [_rounded(v) for v in found]
    return found


_KEPT_AS_SEEN = ("root", "agent", "start_ms", "duration_ms")


def _comparable(found: Any) -> Any:
    """As `_rounded`, with each run without what a deletion leaves as seen (its start is
    part of that, so runs are compared unfiltered, in trace order: see `_all_runs`)."""
    views_only = [view for view in _rounded(found) if "runs" not in view]
    return views_only


def _all_runs(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    found = views.read_agent_view("runs", conn, AgentQuery(Filters(), price_book(), 500))
    runs = [{k: v for k, v in run.items() if k not in _KEPT_AS_SEEN} for run in found["runs"]]
    return sorted(_rounded(runs), key=lambda run: run["trace_id"])


def test_first_load_matches_the_endpoints(tmp_path: Path) -> None:
    conn = open_buffer(tmp_path / "b.sqlite3")
    insert(conn, workload(n=300))
    fold_some(conn, 120)
    f = Filters(since_ms=H, until_ms=H + 2 * HOUR)
    together = views.read_view("all", conn, f)
    for name in ("models", "tools", "cost", "runs"):
        alone = views.read_agent_view(name, conn, AgentQuery(f, price_book()))
        assert _rounded(together[name]) == _rounded(alone), name
    assert together["cost"]["bucket"] == "minute"  # two hours: minutes
    assert (
        len(together["runs"]["runs"]) == agent_views.DEFAULT_LIMIT
        or together["runs"]["next"] is None
    )


def test_agent_spans_folded_as_calls_before_the_upgrade_are_counted_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A buffer folded when an agent's own span (`invoke_agent`, naming the model and
    summing its calls' tokens) counted as one more LLM call: after the upgrade the views
    count its two calls only, before the background fold catches up and after."""
    trace, agent_span = "c" * 32, "c" * 16
    usage = {"gen_ai.request.model": "gpt-4o", "gen_ai.usage.input_tokens": 300}
    rows = [
        (H, H, "planner", "invoke_agent planner",
         {"gen_ai.operation.name": "invoke_agent", "duration_ms": 900, **usage},
         trace, agent_span, None),
        (H, H + 10, "planner", "chat gpt-4o",
         {"gen_ai.operation.name": "chat", "duration_ms": 300, **usage,
          "gen_ai.usage.input_tokens": 100}, trace, "d" * 16, agent_span),
        (H, H + 400, "planner", "chat gpt-4o",
         {"gen_ai.operation.name": "chat", "duration_ms": 300, **usage,
          "gen_ai.usage.input_tokens": 200}, trace, "e" * 16, agent_span),
    ]  # fmt: skip
    path = tmp_path / "b.sqlite3"
    conn = open_buffer(path)
    insert(conn, rows)
    with monkeypatch.context() as old_rules:
        old_rules.setattr(analytics_facts, "AGENT_OPERATIONS", ())
        analytics_fold.fold_all(conn)
    assert _calls_and_tokens(conn) == (3, 600)
    conn.execute("PRAGMA user_version = 13")
    conn.close()
    upgraded = open_buffer(path)
    assert _calls_and_tokens(upgraded) == (2, 300)
    analytics_fold.fold_all(upgraded)
    assert analytics_facts.unfolded(upgraded) == 0
    assert _calls_and_tokens(upgraded) == (2, 300)
    assert upgraded.execute("SELECT sum(calls) FROM agent_models").fetchone()[0] == 2
    upgraded.execute("DELETE FROM events")  # the remade facts table keeps its trigger
    assert upgraded.execute("SELECT count(*) FROM agent_runs").fetchone()[0] == 0


def _calls_and_tokens(conn: sqlite3.Connection) -> tuple[int, int]:
    (model,) = views.read_agent_view("models", conn, AgentQuery(Filters(), price_book()))["models"]
    (run,) = views.read_agent_view("runs", conn, AgentQuery(Filters(), price_book()))["runs"]
    assert (run["llm_calls"], run["input_tokens"]) == (model["calls"], model["input_tokens"])
    return model["calls"], model["input_tokens"]
