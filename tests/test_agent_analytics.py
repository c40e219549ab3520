"""The agent analytics end to end: a workload with hand-computed numbers, sent to the real
daemon over HTTP and by OpenTelemetry's SDK over OTLP, read back from the dashboard API
(api.sock, and TCP with the token) and from `agent-telemetry stats --json` — with nothing
folded, with the rollups folded and the root of a run arriving after the fold, and with
everything folded and the daemon down."""

from __future__ import annotations

import json
import time
import urllib.parse
from typing import Any

import pytest

from agent_telemetryd.cli.api_client import ApiClient
from agent_telemetryd.store import analytics_facts, analytics_fold, dashboard_sql
from agent_telemetryd.store.database import connect, open_buffer
from tests import analytics_fixture as fixture
from tests.conftest import DaemonFactory
from tests.daemon_process import DaemonProcess
from tests.otlp_messages import START_NS, logs, metrics, span, traces
from tests.test_daemon_ingest import post_events
from tests.test_dashboard_http import get, token_of
from tests.test_otlp_coding_agents import CLAUDE_CODE, claude_event, delta_counter
from tests.test_otlp_receiver import PROTOBUF
from tests.test_otlp_receiver import post as otlp_post

QUIET = {"AGENT_TELEMETRY_RATE_LIMIT": "off"}
RANGE = "since=24h"


def api(daemon: DaemonProcess, path: str) -> Any:
    return ApiClient(daemon.api_socket).json("GET", path)


def send(daemon: DaemonProcess, events: list[dict[str, Any]]) -> None:
    status, body = post_events(daemon.http_url(), events)
    assert status == 202 and body["accepted"] == len(events), body


def cli_json(daemon: DaemonProcess, view: str, *args: str) -> Any:
    return json.loads(daemon.cli("stats", view, "--since", "24h", "--json", *args).stdout)


def fold_offline(daemon: DaemonProcess) -> None:
    """What the daemon's background fold does, done to the stopped daemon's file."""
    conn = open_buffer(daemon.database)
    try:
        dashboard_sql.fold_all(conn)
        analytics_fold.fold_all(conn)
        assert analytics_facts.unfolded(conn) == 0
    finally:
        conn.close()


def assert_models(data: dict[str, Any]) -> None:
    found = {row["model"]: row for row in data["models"]}
    assert set(found) == set(fixture.MODELS)
    for model, expected in fixture.MODELS.items():
        row = {key: found[model][key] for key in expected}
        assert row == {**expected, "cost_usd": _approx(expected["cost_usd"])}, model
    assert data["totals"]["calls"] == 7
    assert data["totals"]["cost_usd"] == pytest.approx(fixture.TOTAL_COST, rel=1e-9)
    assert data["totals"]["unpriced_calls"] == 2
    assert data["prices"]["version"] == "2026-12-02"


def assert_tools(data: dict[str, Any]) -> None:
    found = {row["tool"]: {k: v for k, v in row.items() if k != "tool"} for row in data["tools"]}
    assert found == fixture.TOOLS


def assert_cost(data: dict[str, Any]) -> None:
    """Whatever the buckets, they add up to the models' totals, per model too."""
    series = data["series"]
    assert sum(point["calls"] for point in series) == 7
    assert sum(point["input_tokens"] for point in series) == 18_000 + 20_000 + 700
    assert sum(p["cost_usd"] or 0 for p in series) == pytest.approx(fixture.TOTAL_COST)
    by_model = data["by_model"]
    assert sum(p["cost_usd"] or 0 for p in by_model["gpt-4o"]) == pytest.approx(0.2885)
    assert sum(p["unpriced_calls"] for p in by_model["house-model"]) == 2
    assert all(p["cost_usd"] is None for p in by_model["house-model"] if p["calls"])
    assert [p["t"] for p in by_model["gpt-4o"]] == [p["t"] for p in series]
    assert data["prices"]["version"] == "2026-12-02"


def assert_runs(data: dict[str, Any], expected: list[dict[str, Any]]) -> None:
    rows = [{key: row[key] for key in expected[0]} for row in data["runs"]]
    assert rows == [{**run, "cost_usd": _approx(run["cost_usd"])} for run in expected]


def _approx(value: float | None) -> Any:
    return None if value is None else pytest.approx(value, rel=1e-9)


def assert_all_views(daemon: DaemonProcess, t0: int, trace_c: str) -> None:
    assert_models(api(daemon, f"/dashboard/api/models?{RANGE}"))
    assert_tools(api(daemon, f"/dashboard/api/tools?{RANGE}"))
    assert_cost(api(daemon, f"/dashboard/api/cost?{RANGE}"))
    assert_runs(api(daemon, f"/dashboard/api/runs?{RANGE}"), fixture.runs(t0, trace_c))
    everything = api(daemon, f"/dashboard/api/all?{RANGE}")
    assert_models(everything["models"])
    assert_tools(everything["tools"])
    assert_cost(everything["cost"])
    assert_runs(everything["runs"], fixture.runs(t0, trace_c))
    assert_waterfalls(daemon)


def assert_cli(daemon: DaemonProcess, t0: int, trace_c: str) -> None:
    """`stats --json` gives the API's numbers, read from the file."""
    assert_models(cli_json(daemon, "models"))
    assert_tools(cli_json(daemon, "tools"))
    assert_cost(cli_json(daemon, "cost"))
    assert_runs(cli_json(daemon, "runs"), fixture.runs(t0, trace_c))


def assert_waterfalls(daemon: DaemonProcess) -> None:
    for trace_id, expected in (
        (fixture.TRACE_A, fixture.WATERFALL_A),
        (fixture.TRACE_B, fixture.WATERFALL_B),
    ):
        spans = api(daemon, f"/dashboard/api/run/{trace_id}")["spans"]
        assert [(s["name"], s["span_id"], s["depth"]) for s in spans] == expected
    failed = next(
        s
        for s in api(daemon, f"/dashboard/api/run/{fixture.TRACE_A}")["spans"]
        if s["span_id"] == fixture.A4
    )
    assert (failed["error"], failed["error_type"], failed["duration_ms"]) == (
        True,
        "TimeoutError",
        100,
    )


def test_the_views_equal_the_hand_computation_with_nothing_folded(
    daemon_factory: DaemonFactory,
) -> None:
    daemon = daemon_factory(QUIET)
    t0 = fixture.start_ms()
    events, root_a = fixture.shim_events(t0)
    send(daemon, events)
    trace_c = fixture.send_run_c(daemon.http_url(), t0)
    send(daemon, [root_a])
    assert_all_views(daemon, t0, trace_c)
    assert_cli(daemon, t0, trace_c)

    # Over TCP with the dashboard token, as the page asks: the same numbers.
    token = token_of(daemon)
    status, data = get(daemon, f"/dashboard/api/models?{RANGE}&token={token}")
    assert status == 200
    assert_models(data)


def test_a_runs_root_arriving_after_its_spans_were_folded_completes_the_run(
    daemon_factory: DaemonFactory,
) -> None:
    """Spans folded first, the root in the live tail, then all of it folded: the same
    views throughout, in the API and in the CLI with the daemon down."""
    daemon = daemon_factory(QUIET)
    t0 = fixture.start_ms()
    events, root_a = fixture.shim_events(t0)
    send(daemon, events)
    trace_c = fixture.send_run_c(daemon.http_url(), t0)

    # Before its root: run A exists, unnamed, under the agent of the spans seen so far.
    partial = api(daemon, f"/dashboard/api/runs?{RANGE}")["runs"]
    run_a = next(run for run in partial if run["trace_id"] == fixture.TRACE_A)
    assert (run_a["root"], run_a["agent"], run_a["spans"]) == (None, "planner", 4)

    daemon.stop()
    fold_offline(daemon)
    daemon.start()
    send(daemon, [root_a])
    assert_all_views(daemon, t0, trace_c)
    assert_cli(daemon, t0, trace_c)

    daemon.stop()
    fold_offline(daemon)
    assert_cli(daemon, t0, trace_c)  # the daemon is down: read from the file alone
    daemon.start()
    assert_all_views(daemon, t0, trace_c)


def test_filters_pages_and_the_explorer(daemon_factory: DaemonFactory) -> None:
    daemon = daemon_factory(QUIET)
    t0 = fixture.start_ms()
    events, root_a = fixture.shim_events(t0)
    send(daemon, [*events, root_a])
    trace_c = fixture.send_run_c(daemon.http_url(), t0)
    expected_runs = fixture.runs(t0, trace_c)

    # Runs, two to a page, newest first, then the rest by the cursor.
    first = api(daemon, f"/dashboard/api/runs?{RANGE}&limit=2")
    assert [r["trace_id"] for r in first["runs"]] == [trace_c, fixture.TRACE_B]
    cursor = urllib.parse.quote(first["next"])
    second = api(daemon, f"/dashboard/api/runs?{RANGE}&limit=2&before={cursor}")
    assert [r["trace_id"] for r in second["runs"]] == [fixture.TRACE_A]
    assert second["next"] is None
    # Filters: an agent, a model called in the run, a root name.
    by_agent = api(daemon, f"/dashboard/api/runs?{RANGE}&agent=planner")["runs"]
    assert [r["trace_id"] for r in by_agent] == [fixture.TRACE_A]
    by_model = api(daemon, f"/dashboard/api/runs?{RANGE}&model=house-model")["runs"]
    assert [r["trace_id"] for r in by_model] == [fixture.TRACE_B]
    assert_runs({"runs": by_model}, [expected_runs[1]])
    coder = api(daemon, f"/dashboard/api/models?{RANGE}&agent=coder")["models"]
    assert {m["model"]: m["calls"] for m in coder} == {"gpt-4o": 1, "house-model": 2}
    one_tool = api(daemon, f"/dashboard/api/tools?{RANGE}&tool=fetch")["tools"]
    assert [t["tool"] for t in one_tool] == ["fetch"]

    # The explorer: an error's details, from a shim span and from an OTLP span.
    fetch = api(daemon, f"/dashboard/api/explore?{RANGE}&tool=fetch")["events"]
    assert [(e["error"], e["error_type"], e["trace_id"]) for e in fetch] == [
        (True, "TimeoutError", fixture.TRACE_A)
    ]
    assert fetch[0]["properties"]["gen_ai.tool.name"] == "fetch"
    otlp = api(daemon, f"/dashboard/api/explore?{RANGE}&event=execute_tool%20search")["events"]
    assert [(e["error_type"], e["error_message"]) for e in otlp] == [
        ("ValueError", fixture.ERROR_WORDS)
    ]
    # Paged to the end: every stored event once, newest first.
    seen: list[int] = []
    before = ""
    while True:
        page = api(daemon, f"/dashboard/api/explore?{RANGE}&limit=4{before}")
        seen.extend(event["id"] for event in page["events"])
        if page["next"] is None:
            break
        before = f"&before={page['next']}"
    assert seen == sorted(seen, reverse=True) and len(seen) == len(set(seen))
    assert len(seen) == daemon.status()["counters"]["stored"]


def test_bad_paging_and_ids_are_answered_with_what_is_wrong(daemon: DaemonProcess) -> None:
    client = ApiClient(daemon.api_socket)
    for path, words in (
        ("/dashboard/api/runs?before=yesterday", "before must be"),
        ("/dashboard/api/runs?limit=0", "limit must be"),
        ("/dashboard/api/explore?before=x1", "before must be"),
        ("/dashboard/api/run/not-a-trace", "32 lowercase hex"),
        ("/dashboard/api/models?bucket=week", "bucket must be"),
    ):
        response = client.request("GET", path)
        body = json.loads(response.read())
        assert response.status == 400 and words in body["error"], (path, body)
    assert api(daemon, "/dashboard/api/run/" + "c" * 32) == {
        "trace_id": "c" * 32,
        "spans": [],
        "truncated": False,
    }


def test_a_price_set_in_the_config_prices_past_calls_after_a_reload(
    daemon: DaemonProcess,
) -> None:
    """house-model has no price: its calls show tokens and an unknown cost. Priced in the
    config and reloaded, the same stored calls have a cost (700 × 1.00 + 70 × 2.00 per
    million; the loose call reported no tokens, so it stays unknown)."""
    t0 = fixture.start_ms()
    events, root_a = fixture.shim_events(t0)
    send(daemon, [*events, root_a])
    before = {m["model"]: m for m in api(daemon, f"/dashboard/api/models?{RANGE}")["models"]}
    assert (before["house-model"]["cost_usd"], before["house-model"]["unpriced_calls"]) == (
        None,
        2,
    )
    config = daemon.home / "config.toml"
    config.write_text('[prices."house-model"]\ninput = 1.0\noutput = 2.0\nprovider = "local"\n')
    reloaded = json.loads(daemon.cli("reload", "--json").stdout)
    assert "prices" in json.dumps(reloaded)
    after = api(daemon, f"/dashboard/api/models?{RANGE}")
    house = next(m for m in after["models"] if m["model"] == "house-model")
    assert house["cost_usd"] == pytest.approx((700 * 1.0 + 70 * 2.0) / 1e6)
    assert (house["unpriced_calls"], house["provider"]) == (1, "local")
    assert after["prices"]["overridden"] == ["house-model"]
    # The CLI reads the same config.
    cli = {m["model"]: m for m in cli_json(daemon, "models")["models"]}
    assert cli["house-model"]["cost_usd"] == pytest.approx(house["cost_usd"])


def test_reading_the_page_folds_in_the_background_and_the_numbers_stay(
    daemon: DaemonProcess,
) -> None:
    """2,500 calls wait unfolded; reading a view starts the background fold (both
    rollups, on the writer thread); once it is done the same view reads the same."""
    calls = [
        {"event": "llm.call", "properties": {"model": "gpt-4o-mini", "tokens_in": 1000,
                                             "tokens_out": 10 + i % 7, "duration_ms": i % 90}}
        for i in range(2_500)
    ]  # fmt: skip
    for start in range(0, len(calls), 500):
        send(daemon, calls[start : start + 500])
    before = api(daemon, f"/dashboard/api/models?{RANGE}")
    (row,) = before["models"]
    assert (row["calls"], row["input_tokens"]) == (2_500, 2_500_000)
    # 2,500,000 × 0.15 + output (sum of 10..16 repeated) × 0.60, per million.
    output = sum(10 + i % 7 for i in range(2_500))
    assert row["output_tokens"] == output
    assert row["cost_usd"] == pytest.approx((2_500_000 * 0.15 + output * 0.60) / 1e6)
    reader = connect(daemon.database, readonly=True)
    try:
        deadline = time.monotonic() + 30
        while analytics_facts.unfolded(reader) or dashboard_sql.unfolded(reader):
            assert time.monotonic() < deadline, "the background fold did not finish"
            time.sleep(0.05)
        assert reader.execute("SELECT sum(calls) FROM agent_models").fetchone()[0] == 2_500
    finally:
        reader.close()
    after = api(daemon, f"/dashboard/api/models?{RANGE}")
    assert after["models"] == before["models"]


def test_claude_codes_events_over_otlp_land_in_the_same_views(daemon: DaemonProcess) -> None:
    """Claude Code's documented `api_request` and `tool_result` log events, as it exports
    them: its model, tokens (cached input counted in), reported cost and tool, in the
    models and tools views; its token counter metric is not an LLM call."""
    requests = logs(
        claude_event("api_request", START_NS, model="claude-sonnet-4-5", input_tokens=1520,
                     output_tokens=312, cache_read_tokens=9000, cache_creation_tokens=120,
                     cost_usd=0.0123, duration_ms=2314),
        claude_event("api_request", START_NS + 10**9, model="claude-sonnet-4-5",
                     input_tokens=80, output_tokens=40, cache_read_tokens=10520,
                     cache_creation_tokens=0, cost_usd=0.0041, duration_ms=1180),
        claude_event("tool_result", START_NS + 2 * 10**9, tool_name="Bash", success="true",
                     duration_ms=412),
        resource=CLAUDE_CODE,
    )  # fmt: skip
    status, _, _ = otlp_post(f"{daemon.http_url()}/v1/logs", requests.SerializeToString(), PROTOBUF)
    assert status == 200
    usage = metrics(
        delta_counter("claude_code.token.usage", "tokens", [({"model": "claude-sonnet-4-5"}, 1.0)]),
        resource=CLAUDE_CODE,
    )
    status, _, _ = otlp_post(f"{daemon.http_url()}/v1/metrics", usage.SerializeToString(), PROTOBUF)
    assert status == 200
    (model,) = api(daemon, "/dashboard/api/models?since=0")["models"]
    assert {k: model[k] for k in ("model", "provider", "calls", "input_tokens", "output_tokens",
                                  "cache_read_tokens", "unpriced_calls", "p50_ms", "p95_ms")} == {
        "model": "claude-sonnet-4-5", "provider": "anthropic", "calls": 2,
        "input_tokens": (1520 + 9000 + 120) + (80 + 10520), "output_tokens": 352,
        "cache_read_tokens": 19520, "unpriced_calls": 0, "p50_ms": 1180, "p95_ms": 2310,
    }  # fmt: skip
    assert model["cost_usd"] == pytest.approx(0.0123 + 0.0041)  # as reported, not priced
    (tool,) = api(daemon, "/dashboard/api/tools?since=0")["tools"]
    assert (tool["tool"], tool["calls"], tool["errors"], tool["p50_ms"]) == ("Bash", 1, 0, 412)


def test_a_span_with_anthropics_input_count_is_priced_for_all_its_input(
    daemon: DaemonProcess,
) -> None:
    """An instrumentation passing on Anthropic's usage (input without the 5,000 cache
    reads): the models view shows 5,100 input tokens and prices the 100 uncached ones too:
    100 × 3.00 + 5,000 × 0.30 + 200 × 15.00 per million on claude-sonnet-4-5."""
    chat = span(
        "chat claude-sonnet-4-5",
        attributes={
            "gen_ai.operation.name": "chat",
            "gen_ai.request.model": "claude-sonnet-4-5",
            "gen_ai.usage.input_tokens": 100,
            "gen_ai.usage.cache_read.input_tokens": 5000,
            "gen_ai.usage.output_tokens": 200,
        },
    )
    body = traces(chat).SerializeToString()
    status, _, _ = otlp_post(f"{daemon.http_url()}/v1/traces", body, PROTOBUF)
    assert status == 200
    (model,) = api(daemon, "/dashboard/api/models?since=0")["models"]
    assert (model["input_tokens"], model["cache_read_tokens"]) == (5100, 5000)
    assert model["cost_usd"] == pytest.approx((100 * 3.0 + 5000 * 0.30 + 200 * 15.0) / 1e6)
    (run,) = api(daemon, "/dashboard/api/runs?since=0")["runs"]
    assert run["cost_usd"] == pytest.approx(model["cost_usd"])


def test_an_agents_own_span_is_not_one_more_llm_call(daemon: DaemonProcess) -> None:
    """An agent framework following the GenAI conventions: its `invoke_agent` span names
    the model and sums its two `chat` calls' tokens. The models view and the run count
    the two calls and their tokens once: 2 calls, 1,500 in, 150 out on gpt-4o."""
    agent_id, first_id, second_id = (bytes([0, 0, 0, 0, 0, 0, 0, n]) for n in (1, 2, 3))

    def usage(model_in: int, model_out: int) -> dict[str, object]:
        return {
            "gen_ai.request.model": "gpt-4o",
            "gen_ai.usage.input_tokens": model_in,
            "gen_ai.usage.output_tokens": model_out,
        }

    request = traces(
        span("invoke_agent planner", span_id=agent_id, parent_span_id=b"",
             attributes={"gen_ai.operation.name": "invoke_agent", **usage(1500, 150)}),
        span("chat gpt-4o", span_id=first_id, parent_span_id=agent_id,
             attributes={"gen_ai.operation.name": "chat", **usage(1000, 100)}),
        span("chat gpt-4o", span_id=second_id, parent_span_id=agent_id,
             attributes={"gen_ai.operation.name": "chat", **usage(500, 50)}),
    )  # fmt: skip
    body = request.SerializeToString()
    status, _, _ = otlp_post(f"{daemon.http_url()}/v1/traces", body, PROTOBUF)
    assert status == 200
    cost = (1500 * 2.5 + 150 * 10.0) / 1e6
    (model,) = api(daemon, "/dashboard/api/models?since=0")["models"]
    assert (model["calls"], model["input_tokens"], model["output_tokens"]) == (2, 1500, 150)
    assert (model["cost_usd"], model["unpriced_calls"]) == (pytest.approx(cost), 0)
    (run,) = api(daemon, "/dashboard/api/runs?since=0")["runs"]
    assert (run["root"], run["spans"], run["llm_calls"]) == ("invoke_agent planner", 3, 2)
    assert (run["input_tokens"], run["cost_usd"]) == (1500, pytest.approx(cost))


def test_stats_shows_a_cheap_calls_cost_as_the_page_does(daemon: DaemonProcess) -> None:
    """100 input and 10 output tokens on gpt-4o-mini cost $0.000021: `stats models` says
    so, as the page does, not $0.0000 as if the call were free."""
    call = {"model": "gpt-4o-mini", "input_tokens": 100, "output_tokens": 10}
    send(daemon, [{"event": "llm.call", "properties": call}])
    table = daemon.cli("stats", "models", "--since", "24h").stdout
    (row,) = [line for line in table.splitlines() if line.startswith("gpt-4o-mini")]
    assert "$0.000021" in row.split()
