"""The dashboard and the report in real headless Chromium, against a real daemon."""

from __future__ import annotations

import json
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.chromium_cdp import Page, chromium, chromium_path
from tests.daemon_process import DaemonProcess, clean_environment, make_home
from tests.dashboard_page import act, choose, href, open_view, state, texts

AGENTS = ("planner", "coder", "reviewer")


@pytest.fixture(scope="module")
def empty() -> Iterator[DaemonProcess]:
    """A daemon that is sent nothing, for the tests that need only its page."""
    home = make_home()
    process = DaemonProcess(home, clean_environment(home, {"AGENT_TELEMETRY_RATE_LIMIT": "off"}))
    try:
        yield process.start()
    finally:
        process.cleanup()


NAMES = ("agent.run.completed", "tool.call.completed", "tool.call.failed", "llm.request")


def seed_events(n: int = 120) -> list[dict[str, Any]]:
    """Deterministic mix: three agents, four names, errors of every documented kind."""
    events = []
    for i in range(n):
        props: dict[str, Any] = {}
        if i % 3:
            props["duration_ms"] = 10 + (i * 37) % 2000
        if i % 11 == 0:
            props["error"] = "timeout"
        if i % 13 == 0:
            props["status"] = "error"
        events.append({"event": NAMES[i % 4], "agent": AGENTS[i % 3], "properties": props})
    return events


# Markup where a page could be fooled into making elements: an event name, a model, a
# tool, an error message.
MARKUP = '<img src=x class=pwned onerror="document.body.dataset.pwned=1">'
MARKUP_EVENT = {
    "event": MARKUP,
    "agent": "planner",
    "properties": {"model": MARKUP, "tokens_in": 5, "tool": MARKUP, "error": MARKUP},
}


def post_events(
    daemon: DaemonProcess, events: list[dict[str, Any]], accepted: int | None = None
) -> None:
    request = urllib.request.Request(
        daemon.http_url() + "/v1/events",
        data=json.dumps({"events": events}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        want = len(events) if accepted is None else accepted
        assert json.loads(response.read())["accepted"] == want


def is_error(row: dict[str, Any]) -> bool:
    """The documented rule, written independently of the SQL."""
    props = row["properties"]
    error = props.get("error")
    return (
        row["event"].endswith((".error", ".failed"))
        or error not in (None, False, "")  # 0 == False: a count or code of 0 is no error
        or props.get("status") in ("error", "failed")
    )


async def read_page(page: Page) -> dict[str, Any]:
    """The overview's numbers as drawn, once the page says it is ready."""
    await page.wait_for("document.body.dataset.ready === '1'")
    return dict(
        await page.evaluate(
            """(() => {
              const rows = (id) => Object.fromEntries([...document.querySelectorAll(
                `#${id} tbody tr[data-name]`)].map((tr) => [tr.dataset.name, +tr.dataset.events]));
              const canvases = [...document.querySelectorAll('#view-overview .chart canvas')];
              return {
                total: +document.getElementById('total-events').dataset.value,
                errors: +document.getElementById('total-errors').dataset.value,
                agents: rows('by-agent'),
                names: rows('by-event'),
                charts: canvases.length,
                inked: canvases.filter((c) => {
                  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                  for (let i = 3; i < d.length; i += 4) if (d[i] !== 0) return true;
                  return false;
                }).length,
                unit: document.getElementById('events-unit').textContent,
                mode: document.getElementById('consent').dataset.mode,
                accounting: Object.fromEntries(
                  [...document.querySelectorAll('tr[data-counter]')].map((tr) => [
                    tr.dataset.counter, +tr.cells[1].textContent.replace(/[^0-9]/g, '')])),
              };
            })()"""
        )
    )


def expected_from(export: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "total": len(export),
        "errors": sum(is_error(r) for r in export),
        "agents": dict(Counter(r["agent"] for r in export)),
        "names": dict(Counter(r["event"] for r in export)),
    }


async def test_dashboard_shows_the_counts_export_gives(
    daemon: DaemonProcess, tmp_path: Path
) -> None:
    """The page of a running daemon opens on where the data is (events of the last
    minutes: the last hour, in minute buckets), takes the token out of the address, and
    shows the same totals, per-agent and per-name counts (and error count) as
    `agent-telemetry export`; its charts draw; a screenshot is kept."""
    post_events(daemon, [*seed_events(), MARKUP_EVENT])
    base_uuid = "00000000-0000-7000-8000-0000000000"
    again = [{"event": "twice", "uuid": f"{base_uuid}{i:02d}"} for i in range(5)]
    post_events(daemon, again)
    post_events(daemon, again, accepted=0)  # the same uuids: five duplicates, dropped
    exported = daemon.export()
    expected = expected_from(exported)
    url = daemon.cli("dashboard", "--no-browser").stdout.strip()
    assert url.startswith(daemon.http_url() + "/dashboard?token=")
    token = url.split("token=", 1)[1]

    async with chromium(tmp_path / "profile") as page:
        await page.navigate(url)
        shown = await read_page(page)
        shot = await page.screenshot(tmp_path / "dashboard.png")
        address = await href(page)
        assert token not in address and "?" not in address
        assert state(address) == {"since": "1h"}
        assert {k: shown[k] for k in expected} == expected
        assert shown["unit"] == "events per minute"
        assert shown["charts"] == 2 and shown["inked"] == 2
        assert shown["mode"] == "local"
        assert shown["accounting"]["dropped.duplicate"] == 5
        assert shown["accounting"]["received"] == expected["total"] + 5
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000

        # The events explorer pages through every stored event once, newest first.
        await open_view(page, "explore")
        listed = await page_through_explorer(page)
        ids = [event_id for event_id, _ in listed]
        assert ids == sorted(set(ids), reverse=True)
        assert sorted(uuid for _, uuid in listed) == sorted(r["uuid"] for r in exported)

        # Markup in names and values is shown as text, never made into elements.
        await page.evaluate("document.getElementById('explore-newest').click()")
        await page.wait_for(
            f"[...document.querySelectorAll('#explore tr')].some((tr) =>"
            f" tr.dataset.event === {json.dumps(MARKUP)}"
            f" && tr.cells[3].textContent.includes({json.dumps(MARKUP)}))"
        )
        for view, selector in (
            ("models", "#models tr[data-model]"),
            ("tools", "#tools tr[data-tool]"),
        ):
            await open_view(page, view)
            names = await page.evaluate(
                f"[...document.querySelectorAll('{selector}')].map((tr) => tr.cells[0].textContent)"
            )
            assert names == [MARKUP], view
        assert await page.evaluate(
            "document.querySelector('.pwned') === null && !document.body.dataset.pwned"
        )

        # The agent filter narrows every view to that agent's events, and is in the address.
        await open_view(page, "overview")
        await choose(page, "agent", "coder")
        coder = await read_page(page)
        filtered = await href(page)
        assert state(filtered) == {"since": "1h", "agent": "coder"}
        assert coder["total"] == expected["agents"]["coder"]
        assert coder["agents"] == {"coder": expected["agents"]["coder"]}

        # Back: all agents again. Forward, then a fresh load of the address: coder's numbers.
        await act(page, "history.back()")
        assert (await read_page(page))["total"] == expected["total"]
        await act(page, "history.forward()")
        assert (await read_page(page))["total"] == coder["total"]
        await page.reload()
        again_shown = await read_page(page)
        assert await href(page) == filtered
        assert {k: again_shown[k] for k in ("total", "errors", "agents", "names")} == {
            k: coder[k] for k in ("total", "errors", "agents", "names")
        }
        assert await page.evaluate("document.querySelector('#filters [name=agent]').value") == (
            "coder"
        )
        assert page.problems() == []

        # The bookmark opened afresh in this browser, with nothing of this tab's session
        # left: the page still finds its token (kept for the dashboard's origin alone).
        await page.evaluate("sessionStorage.clear()")
        await page.navigate("about:blank")
        await page.navigate(filtered)
        bookmarked = await read_page(page)
        assert bookmarked["total"] == coder["total"]
        assert token not in await href(page)

    # The same address in another browser (no token stored there): the page says how to
    # open the dashboard, and shows no data.
    async with chromium(tmp_path / "other-profile") as page:
        await page.navigate(filtered)
        await page.wait_for("document.body.dataset.ready === 'error'")
        assert await page.evaluate("!document.getElementById('need-token').hidden")
        # Where the token is kept, as the page tells it: this browser's storage, not a tab.
        told = " ".join((await texts(page, "#need-token p"))[0].split())
        assert told.startswith(
            "The token is kept in this browser's storage for the dashboard's address once"
            " agent-telemetry dashboard has opened the dashboard here, and this browser has none"
        ), told
        assert await page.evaluate("document.getElementById('total-events').textContent") == "–"


async def page_through_explorer(page: Page) -> list[tuple[int, str]]:
    """(id, uuid) of every event the explorer lists, following "Older events" to the end."""
    listed: list[tuple[int, str]] = []
    while True:
        shown = await page.evaluate(
            "[...document.querySelectorAll('#explore tr[data-id]')]"
            ".map((tr) => [+tr.dataset.id, tr.dataset.uuid])"
        )
        listed.extend((event_id, uuid) for event_id, uuid in shown)
        if await page.evaluate("document.getElementById('explore-older').hidden"):
            return listed
        await page.evaluate("document.getElementById('explore-older').click()")
        await page.wait_for(
            "(document.querySelector('#explore tr[data-id]') || {dataset: {}}).dataset.id"
            f" !== '{shown[0][0]}'"
        )


async def test_the_first_view_opens_where_the_data_is(empty: DaemonProcess, tmp_path: Path) -> None:
    """The range the page opens with, when the address names none, for buffers whose
    newest and oldest events lie at various distances from now."""
    url = empty.cli("dashboard", "--no-browser").stdout.strip()
    hour, day = 3_600_000, 86_400_000
    async with chromium(tmp_path / "profile") as page:
        await page.navigate(url)
        await page.wait_for("document.body.dataset.ready === '1'")
        now = 1_800_000_000_000
        cases = {
            "empty": (None, None),
            "the last minutes": (now - 5 * 60_000, now - 60_000),
            "three hours": (now - 3 * hour, now - 60_000),
            "two days": (now - 2 * day, now - hour),
            "ninety days, recent": (now - 90 * day, now - day),
            "ninety days, nothing since sixty": (now - 90 * day, now - 60 * day - 30 * 60_000),
        }
        found = await page.evaluate(
            f"Object.fromEntries(Object.entries({json.dumps(cases)}).map(([k, [f, l]]) =>"
            f" [k, window.agentTelemetry.fitRange({{first_ms: f, last_ms: l}}, {now})]))"
        )
    until = now - 60 * day  # the hour after the newest event, exclusive
    assert found == {
        "empty": {"since": "24h"},
        "the last minutes": {"since": "1h"},
        "three hours": {"since": "6h"},
        "two days": {"since": "7d"},
        "ninety days, recent": {"since": "30d"},
        "ninety days, nothing since sixty": {"since": str(until - 30 * day), "until": str(until)},
    }


async def test_report_renders_from_file_with_the_network_off(
    daemon: DaemonProcess, tmp_path: Path
) -> None:
    """The report, made with the daemon down, opens from file:// with networking disabled:
    charts drawn, counts equal to export, no request but the file itself, none failed."""
    post_events(daemon, seed_events(90))
    daemon.stop()
    expected = expected_from(daemon.export())
    report = tmp_path / "report.html"
    daemon.cli("report", "-o", str(report))

    async with chromium(tmp_path / "profile") as page:
        await page.open_offline(report)
        shown = await read_page(page)
        await page.screenshot(tmp_path / "report.png")
        assert {k: shown[k] for k in expected} == expected
        assert shown["charts"] == 2 and shown["inked"] == 2
        assert page.requested_urls() == [report.as_uri()]
        assert page.problems() == []


async def test_empty_buffer_shows_how_to_send_an_event(
    empty: DaemonProcess, tmp_path: Path
) -> None:
    """With no events the page says so and shows how to send one, with the real URL."""
    url = empty.cli("dashboard", "--no-browser").stdout.strip()
    async with chromium(tmp_path / "profile") as page:
        await page.navigate(url)
        await page.wait_for("document.body.dataset.ready === '1'")
        shown = await page.evaluate(
            "(() => { const e = document.getElementById('empty');"
            " return {hidden: e.hidden, text: e.innerText}; })()"
        )
        assert shown["hidden"] is False
        assert "No events yet" in shown["text"]
        assert state(await href(page)) == {"since": "24h"}
        assert empty.http_url() + "/v1/events" in shown["text"]
        # The charts of the models view say there is nothing to chart, as the tables do.
        await open_view(page, "models")
        under = await page.evaluate(
            """['chart-cost', 'chart-tokens'].map((id) => {
                 let next = document.getElementById(id).closest('.panel').querySelector('h2');
                 do next = next.nextElementSibling; while (next && !next.innerText.trim());
                 return next && next.innerText.trim(); })"""
        )
        assert under == ["no LLM call in range"] * 2
        assert page.problems() == []


def test_a_missing_browser_fails_rather_than_skips(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without chromium on PATH the browser tests fail: no browser, no proof."""
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(pytest.fail.Exception, match="chromium is not installed"):
        chromium_path()
