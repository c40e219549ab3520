"""The team dashboard in real headless Chromium, against the server with the
three-installation fixture: refused without a key and with the ingest key, right with
the read key, the key never in the address, a screenshot kept."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
import team_fixture as fx
from server_helpers import INGEST_KEYS, READ_KEY, Running

from tests.chromium_cdp import Page, chromium

READ_PAGE = """(() => {
  const rows = (id) => [...document.querySelectorAll(
      `#${id} tbody tr[data-name], #${id} tbody tr[data-day]`)]
    .map((tr) => ({...tr.dataset, text: [...tr.cells].map((td) => td.textContent)}));
  const canvases = [...document.querySelectorAll('.chart canvas')];
  const out = (id) => document.getElementById(id);
  return {
    installs: out('installs').dataset.value,
    events: out('events').dataset.value,
    errorRate: out('error-rate').dataset.value,
    errorRateText: out('error-rate').textContent,
    agents: out('agents').dataset.value,
    cost: out('cost').textContent,
    costNote: out('cost-note').textContent,
    days: rows('days'),
    models: rows('models'),
    tools: rows('tools'),
    agentRows: rows('agents-table'),
    charts: canvases.length,
    inked: canvases.filter((c) => {
      const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
      for (let i = 3; i < d.length; i += 4) if (d[i] !== 0) return true;
      return false;
    }).length,
  };
})()"""


async def enter_key(page: Page, key: str) -> None:
    await page.evaluate(
        f"""(() => {{
          document.getElementById('key-input').value = {key!r};
          document.getElementById('key-form').requestSubmit();
        }})()"""
    )


async def shows_no_data(page: Page) -> bool:
    return bool(
        await page.evaluate(
            "document.getElementById('content').hidden"
            " && !document.getElementById('key-panel').hidden"
            " && document.getElementById('installs').textContent === '–'"
            " && !document.querySelector('.chart canvas')"
        )
    )


async def test_team_dashboard_in_chromium(server: Running, tmp_path: Path) -> None:
    await fx.load(server)
    url = f"{server.url}/team?days=7"
    async with chromium(tmp_path / "profile") as page:
        # No key: the page asks for one and shows nothing; the API refuses the page's origin too.
        await page.navigate(url)
        await page.wait_for("document.body.dataset.ready === 'needs-key'")
        assert await shows_no_data(page)
        status = await page.evaluate("fetch('/api/v1/analytics/overview').then((r) => r.status)")
        assert status == 401

        # The ingest key does not open it, and is not kept.
        await enter_key(page, INGEST_KEYS[0])
        await page.wait_for("document.body.dataset.ready === 'refused'")
        assert await shows_no_data(page)
        assert "read keys" in await page.evaluate("document.getElementById('refused').textContent")
        assert await page.evaluate("sessionStorage.length") == 0

        # The read key: the hand-computed figures.
        await enter_key(page, READ_KEY)
        await page.wait_for("document.body.dataset.ready === '1'")
        shown: dict[str, Any] = await page.evaluate(READ_PAGE)
        await page.screenshot(tmp_path / "team-dashboard.png")
        check_figures(shown)
        assert shown["charts"] == 6 and shown["inked"] == 6
        assert READ_KEY not in await page.evaluate("location.href")

        # Kept for the tab's session: a reload needs no key.
        await page.navigate(url)
        await page.wait_for("document.body.dataset.ready === '1'")
        assert await page.evaluate("sessionStorage.length") == 1

        # A link may carry the key in its fragment: it is taken and wiped from the address.
        await page.evaluate("sessionStorage.clear()")
        await page.navigate("about:blank")  # else only the fragment changes: no new load
        await page.navigate(f"{url}#key={READ_KEY}")
        await page.wait_for("document.body.dataset.ready === '1'")
        assert await page.evaluate("location.href") == url
        assert page.problems() == []
        assert all(u.startswith(server.url) for u in page.requested_urls()), page.requested_urls()

    shot = tmp_path / "team-dashboard.png"
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000


def check_figures(shown: dict[str, Any]) -> None:
    assert (shown["installs"], shown["events"], shown["agents"]) == ("3", "9", "2")
    assert float(shown["errorRate"]) == fx.ERROR_RATE
    assert shown["errorRateText"] == "22.2%"
    by_day = {d["day"]: d for d in shown["days"]}
    assert len(by_day) == 7  # every day of the window, the empty ones too
    for day in (fx.D0, fx.D1):
        assert int(by_day[day]["installs"]) == fx.INSTALLS_BY_DAY[day]
        assert int(by_day[day]["errors"]) == fx.ERRORS_BY_DAY[day]
    assert by_day[fx.D1]["errorRate"] == str(round(2 / 6, 6))
    assert by_day[fx.D1]["text"][-1] == "$0.0060 + 1 call without a reported cost"
    models = {m["name"]: m for m in shown["models"]}
    assert set(models) == set(fx.MODELS)
    for name, expected in fx.MODELS.items():
        assert float(models[name]["cost"]) == expected["cost_usd"]
        assert int(models[name]["calls"]) == expected["calls"]
        assert int(models[name]["inputTokens"]) == expected["input_tokens"]
    assert models["gpt-x"]["text"][5] == "$0.0180"
    assert models["claude-y"]["text"][5] == "$0.0500 + 1 call without a reported cost"
    assert shown["cost"] == "$0.0680"
    assert shown["costNote"] == "1 call without a reported cost"
    tools = {
        t["name"]: (int(t["calls"]), int(t["errors"]), float(t["errorRate"]))
        for t in shown["tools"]
    }
    assert tools == fx.TOOLS
    assert {a["name"]: int(a["events"]) for a in shown["agentRows"]} == {"planner": 3, "coder": 6}


async def test_the_page_and_assets_hold_no_data_and_refuse_framing(server: Running) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{server.url}/team") as resp:
            assert resp.status == 200
            assert "frame-ancestors 'none'" in resp.headers["Content-Security-Policy"]
            assert resp.headers["Referrer-Policy"] == "no-referrer"
            html = await resp.text()
        assert "/team/assets/uPlot.iife.min.js" in html and "http" not in html.split("<body")[1]
        async with session.get(f"{server.url}/team/assets/uPlot.iife.min.js") as resp:
            assert (resp.status, resp.content_type) == (200, "text/javascript")
        async with session.get(f"{server.url}/team/assets/package.json") as resp:
            assert resp.status == 404
