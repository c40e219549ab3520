"""The agent analytics on the page, in real headless Chromium against a real daemon: the
hand-computed workload of tests/analytics_fixture.py (reported costs, priced tokens, a
model with no price, failing tool calls, runs of nested spans out of order, one run over
OTLP) read back from the rendered page — models, tools, tokens and cost, runs and a run's
waterfall, the events explorer, metric series — live and from the static report opened
from file:// with the network off. A screenshot of each view is kept in the test's folder.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.metrics import Counter, MeterProvider
from opentelemetry.sdk.metrics.export import AggregationTemporality, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource

from tests import analytics_fixture as fixture
from tests.chromium_cdp import Page, chromium
from tests.daemon_process import DaemonProcess, clean_environment, make_home
from tests.dashboard_page import (
    act,
    href,
    inked_charts,
    money,
    ms,
    number,
    open_run,
    open_view,
    pct,
    ready,
    rows,
    state,
    texts,
)
from tests.test_daemon_ingest import post_events
from tests.test_otlp_receiver import http_exporters

RANGE = "#since=24h"  # the fixture's runs started two hours ago by the agents' clocks
COST_COUNTER = 1.75  # USD, added to an OTLP counter in two steps


@dataclass
class Workload:
    daemon: DaemonProcess
    t0: int
    trace_c: str

    def runs(self) -> list[dict[str, Any]]:
        return fixture.runs(self.t0, self.trace_c)


def send(daemon: DaemonProcess, events: list[dict[str, Any]]) -> None:
    status, body = post_events(daemon.http_url(), events)
    assert status == 202 and body["accepted"] == len(events), body


def send_cost_counter(url: str) -> None:
    """A coding agent's cost counter through OpenTelemetry's SDK, as delta points."""
    exporter = http_exporters(url).metrics(
        preferred_temporality={Counter: AggregationTemporality.DELTA}
    )
    reader = PeriodicExportingMetricReader(exporter, export_interval_millis=3_600_000)
    meters = MeterProvider(
        [reader], resource=Resource.create({"service.name": "sdk-agent"}), shutdown_on_exit=False
    )
    try:
        counter = meters.get_meter("agent").create_counter("agent.cost.usage", unit="USD")
        counter.add(1.5)
        counter.add(0.25)
    finally:
        meters.shutdown()


@pytest.fixture(scope="module")
def workload() -> Iterator[Workload]:
    """One daemon for the module: the fixture's runs, run A's root last, and a counter."""
    home = make_home()
    daemon = DaemonProcess(home, clean_environment(home, {"AGENT_TELEMETRY_RATE_LIMIT": "off"}))
    try:
        daemon.start()
        t0 = fixture.start_ms()
        events, root_a = fixture.shim_events(t0)
        send(daemon, events)
        trace_c = fixture.send_run_c(daemon.http_url(), t0)
        send(daemon, [root_a])
        send_cost_counter(daemon.http_url())
        yield Workload(daemon, t0, trace_c)
    finally:
        daemon.cleanup()


def expected_models() -> dict[str, list[str]]:
    """Each model's row as the page writes it, from the hand computation."""
    found = {}
    for model, m in fixture.MODELS.items():
        found[model] = [
            model,
            m["provider"] or "–",
            f"{m['calls']:,}",
            f"{m['input_tokens']:,}",
            f"{m['output_tokens']:,}",
            f"{m['cache_read_tokens']:,}",
            money(m["cost_usd"], m["unpriced_calls"] if m["cost_usd"] is not None else 0),
            ms(m["p50_ms"]),
            ms(m["p95_ms"]),
            pct(m["error_rate"]),
        ]
    return found


def expected_runs(work: Workload) -> dict[str, list[str]]:
    """Each run's row but its start (a local time), from the hand computation."""
    return {
        run["trace_id"]: [
            run["root"],
            run["agent"],
            ms(run["duration_ms"]),
            str(run["spans"]),
            str(run["llm_calls"]),
            f"{run['input_tokens']:,}",
            f"{run['output_tokens']:,}",
            money(run["cost_usd"], run["unpriced_calls"]),
            str(run["errors"]),
        ]
        for run in work.runs()
    }


async def assert_models_view(page: Page) -> None:
    shown = await rows(page, "#models tbody tr[data-model]", "model")
    assert shown == expected_models()
    # Anchors for the eye: the reported + priced sum, and the model with no price.
    assert shown["gpt-4o"][6] == "$0.2885" and shown["house-model"][6] == "unknown"
    total = (await rows(page, "#models tfoot tr", "total"))["1"]
    assert total[2:5] == ["7", "38,700", "1,970"]
    assert total[6] == money(fixture.TOTAL_COST, 2) == "$0.3344 + 2 unknown"
    note = " ".join(await texts(page, "#prices-note"))
    assert "2026-12-02" in note and "unknown cost" in note
    # Tokens and cost per bucket: the buckets add up to the same calls, tokens and cost.
    buckets = list((await rows(page, "#cost-table tbody tr[data-t]", "t")).values())
    assert sum(number(b[1]) for b in buckets) == 7
    assert sum(number(b[2]) for b in buckets) == 38_700
    assert sum(number(b[3]) for b in buckets) == 1_970
    costs = [b[4].split(" + ")[0] for b in buckets]
    assert sum(float(c.lstrip("$")) for c in costs if c != "unknown") == pytest.approx(
        fixture.TOTAL_COST, abs=1e-4 * len(buckets)
    )
    assert await inked_charts(page, "#view-models") == (2, 2)


async def assert_tools_view(page: Page) -> None:
    shown = await rows(page, "#tools tbody tr[data-tool]", "tool")
    assert shown == {
        tool: [
            tool,
            str(t["calls"]),
            str(t["errors"]),
            pct(t["error_rate"]),
            ms(t["p50_ms"]),
            ms(t["p95_ms"]),
            "",
        ]
        for tool, t in fixture.TOOLS.items()
    }
    assert shown["search"][1:4] == ["4", "2", "50.0%"]


async def assert_runs_view(page: Page, work: Workload) -> None:
    shown = await rows(page, "#runs tbody tr[data-trace]", "trace")
    assert list(shown) == [run["trace_id"] for run in work.runs()]  # newest first
    assert {trace: cells[1:] for trace, cells in shown.items()} == expected_runs(work)


async def assert_waterfall_a(page: Page) -> None:
    """Run A's spans in order, each bar offset by its start on the run's 5 s."""
    spans = await page.evaluate(
        """[...document.querySelectorAll('#waterfall tr.span')].map((tr) => {
             const bar = tr.querySelector('.span-bar');
             return [tr.dataset.name, tr.dataset.spanId, +tr.dataset.depth,
                     bar.style.left, bar.style.width, tr.cells[2].textContent,
                     tr.cells[0].textContent];
           })"""
    )
    assert [(s[0], s[1], s[2]) for s in spans] == fixture.WATERFALL_A
    # Starts a+0, +100, +1500, +1600, +2000 ms; durations 5000, 1200, 300, 100, 2000.
    assert [(float(s[3].rstrip("%")), float(s[4].rstrip("%"))) for s in spans] == [
        (0, 100),
        (2, 24),
        (30, 6),
        (32, 2),
        (40, 40),
    ]
    assert [s[5] for s in spans] == ["5.00 s", "1.20 s", "300 ms", "100 ms", "2.00 s"]
    assert "TimeoutError" in spans[3][6]  # the failing fetch call, marked in its row


async def assert_explorer(page: Page) -> None:
    shown = await rows(page, "#explore tbody tr[data-event]", "event")
    otlp_tool = shown["execute_tool search"]
    assert otlp_tool[3].startswith("ValueError") and fixture.ERROR_WORDS in otlp_tool[3]
    fetch = await page.evaluate(
        """(() => { const tr = [...document.querySelectorAll('#explore tr.error')]
             .find((r) => r.textContent.includes('TimeoutError'));
           return [tr.dataset.event, tr.cells[2].textContent,
             Object.fromEntries([...tr.querySelectorAll('.props dt')].map(
               (dt) => [dt.textContent, dt.nextElementSibling.textContent]))]; })()"""
    )
    assert fetch[0:2] == ["tool.call", "planner"]
    assert fetch[2]["gen_ai.tool.name"] == "fetch" and fetch[2]["duration_ms"] == "100"
    assert len(shown) > 5  # newest first, every kind of event


async def assert_metrics_view(page: Page) -> None:
    names = await texts(page, "#metric-charts .metric h3")
    assert any("agent.cost.usage" in n and "sdk-agent" in n for n in names), names
    cost = await page.evaluate(
        "document.querySelector('.metric[data-name=\"agent.cost.usage\"]').dataset.total"
    )
    assert float(cost) == pytest.approx(COST_COUNTER)
    assert (await inked_charts(page, "#metric-charts"))[1] >= 1


async def walk_every_view(page: Page, work: Workload, tmp_path: Path, prefix: str) -> None:
    """Each view in turn, compared with the hand computation, and photographed."""
    await page.screenshot(tmp_path / f"{prefix}-overview.png")
    cards = await texts(page, "#llm-calls, #total-cost")
    assert cards == ["7", "$0.3344"]
    await open_view(page, "models")
    await assert_models_view(page)
    await page.screenshot(tmp_path / f"{prefix}-models.png")
    await open_view(page, "tools")
    await assert_tools_view(page)
    await page.screenshot(tmp_path / f"{prefix}-tools.png")
    await open_view(page, "runs")
    await assert_runs_view(page, work)
    await open_run(page, fixture.TRACE_A)
    assert state(await href(page))["run"] == fixture.TRACE_A
    await assert_waterfall_a(page)
    await page.screenshot(tmp_path / f"{prefix}-runs.png")
    await open_view(page, "explore")
    await assert_explorer(page)
    await page.screenshot(tmp_path / f"{prefix}-explore.png")
    await open_view(page, "metrics")
    await assert_metrics_view(page)
    await page.screenshot(tmp_path / f"{prefix}-metrics.png")
    for view in ("overview", "models", "tools", "runs", "explore", "metrics"):
        shot = tmp_path / f"{prefix}-{view}.png"
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000


async def test_every_view_shows_the_hand_computed_numbers(
    workload: Workload, tmp_path: Path
) -> None:
    url = workload.daemon.cli("dashboard", "--no-browser").stdout.strip()
    async with chromium(tmp_path / "profile") as page:
        await page.navigate(url + RANGE)
        await ready(page)
        await walk_every_view(page, workload, tmp_path, "live")

        # The back button walks the views back; a run's waterfall has its own address.
        await act(page, "history.back()")
        assert state(await href(page)).get("view") == "explore"
        await act(page, "history.back()")
        assert state(await href(page))["run"] == fixture.TRACE_A
        assert await page.evaluate("!document.getElementById('waterfall-panel').hidden")
        assert page.problems() == []
        await a_failed_load_leaves_no_trace(page)


async def a_failed_load_leaves_no_trace(page: Page) -> None:
    """A bad run id in the address, with run A's waterfall open: the error is shown, not
    run A's spans under it; a valid run chosen next, then another view, and it is gone."""
    shown = "(id) => !document.getElementById(id).hidden"
    await page.evaluate(f"location.hash = '{RANGE}&view=runs&run=zzz'")
    await page.wait_for("document.body.dataset.ready === 'error'")
    assert await texts(page, "#load-error") == [
        "Could not load the data: a trace id is 32 lowercase hex digits"
    ]
    assert await page.evaluate(f"[({shown})('load-error'), ({shown})('waterfall-panel')]") == [
        True,
        False,
    ]
    await open_run(page, fixture.TRACE_B)
    assert await page.evaluate(f"[({shown})('load-error'), ({shown})('waterfall-panel')]") == [
        False,
        True,
    ]
    await open_view(page, "explore")
    assert await page.evaluate(f"({shown})('load-error')") is False
    assert len(await rows(page, "#explore tbody tr[data-event]", "event")) > 5


async def test_a_model_filter_narrows_the_agent_views(workload: Workload, tmp_path: Path) -> None:
    """house-model is called in run B only (and by one loose call): the runs view lists B,
    the models view that model alone, with its unknown cost."""
    url = workload.daemon.cli("dashboard", "--no-browser").stdout.strip()
    async with chromium(tmp_path / "profile") as page:
        await page.navigate(url + RANGE + "&view=runs&model=house-model")
        await ready(page)
        shown = await rows(page, "#runs tbody tr[data-trace]", "trace")
        assert list(shown) == [fixture.TRACE_B]
        await open_view(page, "models")
        models = await rows(page, "#models tbody tr[data-model]", "model")
        assert models == {"house-model": expected_models()["house-model"]}
        assert page.problems() == []


async def test_the_report_shows_every_view_from_file_with_the_network_off(
    workload: Workload, tmp_path: Path
) -> None:
    report = tmp_path / "report.html"
    workload.daemon.cli("report", "-o", str(report), "--since", "24h")
    async with chromium(tmp_path / "profile") as page:
        await page.open_offline(report)
        await ready(page)
        await walk_every_view(page, workload, tmp_path, "report")
        # Run B's waterfall too: every listed run's spans are in the file.
        await act(page, "history.back()")
        await open_view(page, "runs")
        await open_run(page, fixture.TRACE_B)
        spans = await page.evaluate(
            "[...document.querySelectorAll('#waterfall tr.span')].map((tr) =>"
            " [tr.dataset.name, tr.dataset.spanId || null, +tr.dataset.depth])"
        )
        assert [tuple(s) for s in spans] == fixture.WATERFALL_B
        assert page.requested_urls() == [report.as_uri()]
        assert page.problems() == []
