"""The dashboard over data spread across hours, in real headless Chromium against a real
daemon: three batches received 5 h, 3 h and 90 min ago (written to the buffer before the
daemon starts, since the daemon stamps what it receives with its own clock). Sparse
buckets are drawn, each bar covers its own bucket, the stated range is the one counted,
a long event name does not widen the page, and the tool filter agrees with the Tools
view."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent_telemetryd.store.database import open_buffer
from tests.chromium_cdp import Page, chromium
from tests.daemon_process import DaemonProcess, clean_environment, make_home
from tests.dashboard_page import act, choose, href, open_view, ready, rows, state, texts

MINUTE, HOUR = 60_000, 3_600_000
AGO = (5 * HOUR, 3 * HOUR, 90 * MINUTE)
LONG_NAME = "agent.step." + "x" * 185  # 196 characters, no space to break at
GREP = "execute_tool grep"
VIEWS = ("overview", "models", "tools", "runs", "explore", "metrics")


def batch(at: int, first: bool) -> list[tuple[str, int, dict[str, Any], str | None]]:
    """42 events received from `at` on, 3 of them errors: (name, received ms, properties,
    span id). The first batch also holds four grep calls over OTLP (one failed) named by
    their span only, and the event with a long name."""
    events: list[tuple[str, dict[str, Any], str | None]] = []
    if first:
        for i in range(4):
            props = {"gen_ai.operation.name": "execute_tool", "duration_ms": 20 + i}
            if i == 0:
                props["status"] = "error"
            events.append((GREP, props, f"{i + 1:016x}"))
        events.append((LONG_NAME, {}, None))
    errors = 2 if first else 3
    events += [("tool.call.failed", {}, None)] * errors
    events += [("agent.step", {"duration_ms": 10 + i}, None) for i in range(42 - len(events))]
    return [(name, at + i * 100, props, span) for i, (name, props, span) in enumerate(events)]


def seed(path: Path, now: int) -> list[int]:
    """The three batches, each inside one minute; returns when each starts."""
    starts = [(now - ago) // MINUTE * MINUTE + 5_000 for ago in AGO]
    conn = open_buffer(path)
    try:
        conn.execute("BEGIN")
        for n, at in enumerate(starts):
            for i, (name, received, props, span) in enumerate(batch(at, n == 0)):
                conn.execute(
                    "INSERT INTO events (uuid, event, ts_ms, received_ms, properties, agent,"
                    " pid, transport, consent, upload, anonymous_id, daemon_version, trace_id,"
                    " span_id) VALUES (?, ?, ?, ?, ?, 'planner', 1, 'http', 'local', 'local',"
                    " 'anon', 'test', ?, ?)",
                    (
                        f"00000000-0000-7000-8000-{n:04d}{i:08d}",
                        name,
                        received,
                        received,
                        json.dumps(props),
                        None if span is None else "c" * 32,
                        span,
                    ),
                )
        conn.execute("COMMIT")
    finally:
        conn.close()
    return starts


@pytest.fixture(scope="module")
def spread() -> Iterator[tuple[DaemonProcess, list[int]]]:
    home = make_home()
    process = DaemonProcess(home, clean_environment(home, {"AGENT_TELEMETRY_RATE_LIMIT": "off"}))
    try:
        starts = seed(process.database, int(time.time() * 1000))
        yield process.start(), starts
    finally:
        process.cleanup()


# The error colour's pixels in a chart's plot area, by column: where the series is drawn.
INKED_COLUMNS = """((id) => {
  const u = window.agentTelemetry.chartIn(id);
  const hex = window.agentTelemetry.cssVar('--error').slice(1);
  const want = [0, 2, 4].map((i) => parseInt(hex.slice(i, i + 2), 16));
  const { left, top, width, height } = u.bbox;
  const d = u.ctx.getImageData(left, top, width, height).data;
  const found = new Set();
  for (let y = 0; y < height; y++) for (let x = 0; x < width; x++) {
    const i = (y * width + x) * 4;
    if (d[i + 3] > 128 && want.every((c, k) => Math.abs(d[i + k] - c) < 60)) found.add(x);
  }
  return [...found].sort((a, b) => a - b);
})"""

# The events chart's bars, read along a row of the plot just above zero: the columns with ink, and
# where each bucket with events begins and ends on the x axis (canvas pixels).
BARS = """(() => {
  const D = window.agentTelemetry;
  const u = D.chartIn('chart-events');
  const step = D.bucketMs(D.all.filters.bucket);
  const y = Math.round(u.valToPos(0, 'y', true)) - 2;
  const { left, width } = u.bbox;
  const d = u.ctx.getImageData(left, y, width, 1).data;
  const inked = [];
  for (let x = 0; x < width; x++) if (d[x * 4 + 3] > 40) inked.push(left + x);
  const buckets = D.all.over_time.filter((p) => p.events > 0).map((p) =>
    [u.valToPos(p.t_ms / 1000, 'x', true), u.valToPos((p.t_ms + step) / 1000, 'x', true)]);
  return { inked, buckets, right: left + width, bucket: D.all.filters.bucket };
})()"""


def clusters(columns: list[int]) -> int:
    """Groups of columns with no more than 3 px between neighbours."""
    return sum(1 for i, x in enumerate(columns) if i == 0 or x - columns[i - 1] > 3)


def runs_of(hours: list[int]) -> int:
    """How many runs of consecutive hours."""
    return sum(1 for i, h in enumerate(hours) if i == 0 or h != hours[i - 1] + 1)


async def goto(page: Page, fragment: str) -> None:
    await act(page, f"location.hash = {json.dumps(fragment)}")


async def assert_bars_cover_their_buckets(page: Page, bucket: str) -> None:
    """Ink only inside buckets with events, and each of those covered from 15% to 85% of
    its width: the bar is its own bucket's, whole, not half in the bucket before."""
    bars = await page.evaluate(BARS)
    assert bars["bucket"] == bucket and bars["buckets"]
    inked = set(bars["inked"])
    for x in inked:
        assert any(a - 1 <= x <= b + 1 for a, b in bars["buckets"]), (x, bars)
    for a, b in bars["buckets"]:
        width = b - a
        middle = range(int(a + 0.15 * width) + 1, int(b - 0.15 * width))
        assert all(x in inked for x in middle), (a, b, bars)
        assert b <= bars["right"] + 1


async def no_sideways_scroll(page: Page) -> bool:
    return bool(
        await page.evaluate(
            "document.documentElement.scrollWidth <= document.documentElement.clientWidth"
        )
    )


async def test_sparse_data_is_drawn_where_it_was_counted(
    spread: tuple[DaemonProcess, list[int]], tmp_path: Path
) -> None:
    daemon, starts = spread
    url = daemon.cli("dashboard", "--no-browser").stdout.strip()
    async with chromium(tmp_path / "profile") as page:
        # Six hours, in minutes: three lone minutes with events among 210 empty ones.
        await page.navigate(url + "#since=6h")
        await ready(page)
        assert await texts(page, "#error-rate, #total-errors, #events-unit") == [
            "7.14%",
            "9 errors",
            "events per minute",
        ]
        assert clusters(await page.evaluate(f"{INKED_COLUMNS}('chart-errors')")) == 3

        # The range said is the range counted: from the start of the hour six hours back.
        since = await page.evaluate("window.agentTelemetry.all.filters.since_ms")
        asked = int(time.time() * 1000) - 6 * HOUR
        assert since % HOUR == 0 and asked - HOUR < since <= asked
        scope = (await texts(page, "#scope"))[0]
        start = await page.evaluate(f"new Date({since}).toLocaleString()")
        assert f"the last 6 hours, from {start} to now" in scope, scope

        # A week in hours: the buckets with errors are drawn, lone or not.
        await goto(page, "#since=7d&bucket=hour")
        hours = sorted({at // HOUR for at in starts})
        assert clusters(await page.evaluate(f"{INKED_COLUMNS}('chart-errors')")) == runs_of(hours)
        await assert_bars_cover_their_buckets(page, "hour")
        # A month in days: the last day's bar whole at the right edge.
        await goto(page, "#since=30d")
        await assert_bars_cover_their_buckets(page, "day")
        await page.screenshot(tmp_path / "month.png")

        # The long name is offered, in a menu no wider than the others' room, and no view
        # scrolls sideways, with that name chosen or not.
        assert LONG_NAME in await page.evaluate(
            "[...document.querySelectorAll('#filters [name=event] option')].map((o) => o.value)"
        )
        widths = await page.evaluate(
            "[...document.querySelectorAll('#filters select')].map((s) => s.offsetWidth)"
        )
        assert max(widths) <= 260, widths
        for view in (*VIEWS[1:], VIEWS[0]):
            await open_view(page, view)
            assert await no_sideways_scroll(page), view
        await choose(page, "event", LONG_NAME)
        assert await texts(page, "#total-events") == ["1"]
        assert await no_sideways_scroll(page)
        await open_view(page, "explore")
        assert await no_sideways_scroll(page)
        await choose(page, "event", "")

        # grep, called over OTLP by span name only: the Tools view counts its calls, and
        # its link filters the events to those same calls.
        await open_view(page, "tools")
        assert (await rows(page, "#tools tbody tr[data-tool]", "tool"))[GREP[13:]][1:3] == [
            "4",
            "1",
        ]
        await act(page, "document.querySelector('#tools tr[data-tool=grep] a').click()")
        assert state(await href(page)) == {"view": "tools", "since": "30d", "tool": "grep"}
        scope = (await texts(page, "#scope"))[0]
        assert scope.endswith("The tool filter applies to the Tools and Events views only."), scope
        await open_view(page, "explore")
        listed = await page.evaluate(
            "[...document.querySelectorAll('#explore tr[data-id]')].map((tr) => tr.dataset.event)"
        )
        assert listed == [GREP] * 4
        assert page.problems() == []
