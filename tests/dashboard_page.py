"""Reading the dashboard page in Chromium as a user sees it: tables as their cells' text,
the address, a click on a tab or a link, a filter chosen — each then waits until the page
says it has drawn (body[data-ready])."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.chromium_cdp import Page

READY = "document.body.dataset.ready === '1'"


async def ready(page: Page) -> None:
    await page.wait_for(READY)


async def rows(page: Page, selector: str, key: str) -> dict[str, list[str]]:
    """{row's data-<key>: [each cell's text]} for the rows `selector` matches."""
    return dict(
        await page.evaluate(
            f"""Object.fromEntries([...document.querySelectorAll({json.dumps(selector)})]
              .map((tr) => [tr.dataset[{json.dumps(key)}],
                            [...tr.cells].map((td) => td.textContent.trim())]))"""
        )
    )


async def texts(page: Page, selector: str) -> list[str]:
    return list(
        await page.evaluate(
            f"[...document.querySelectorAll({json.dumps(selector)})]"
            ".map((e) => e.textContent.trim())"
        )
    )


async def href(page: Page) -> str:
    return str(await page.evaluate("location.href"))


async def act(page: Page, script: str) -> None:
    """Run `script` (a user's action) and wait for the page to have drawn its result."""
    await page.evaluate(f"(() => {{ document.body.dataset.ready = ''; {script}; }})()")
    await ready(page)


async def open_view(page: Page, view: str) -> None:
    await act(page, f"document.querySelector('#tabs a[data-view={view}]').click()")


async def open_run(page: Page, trace_id: str) -> None:
    """Click a run's row in the runs table."""
    await act(page, f"document.querySelector('#runs tr[data-trace=\"{trace_id}\"]').click()")


async def choose(page: Page, name: str, value: str) -> None:
    """Pick `value` in the filter `name`, as a user does with the menu."""
    await act(
        page,
        f"""const s = document.querySelector('#filters [name={name}]');
            s.value = {json.dumps(value)};
            s.dispatchEvent(new Event('change', {{bubbles: true}}))""",
    )


async def inked_charts(page: Page, selector: str) -> tuple[int, int]:
    """(canvases under `selector`, how many of them have anything drawn)."""
    found = await page.evaluate(
        f"""(() => {{
          const canvases = [...document.querySelectorAll({json.dumps(selector + " canvas")})];
          return [canvases.length, canvases.filter((c) => {{
            const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
            for (let i = 3; i < d.length; i += 4) if (d[i] !== 0) return true;
            return false;
          }}).length];
        }})()"""
    )
    return found[0], found[1]


def number(text: str) -> int:
    return int(text.replace(",", ""))


def money(value: float | None, unknown_calls: int = 0) -> str:
    """A cost as the page writes it: 4 decimals under a dollar, "unknown" when none of
    the calls could be priced, and the count of those that could not be."""
    if value is None:
        return "unknown"
    text = "$0" if value == 0 else f"${value:.4f}" if value < 1 else f"${value:.2f}"
    return f"{text} + {unknown_calls} unknown" if unknown_calls else text


def ms(value: float | None) -> str:
    if value is None:
        return "–"
    return f"{value / 1000:.2f} s" if value >= 1000 else f"{round(value)} ms"


def pct(rate: float | None) -> str:
    if rate is None:
        return "–"
    return f"{rate * 100:.2f}%" if rate < 0.1 else f"{rate * 100:.1f}%"


def state(page_href: str) -> dict[str, Any]:
    """The filters and view in an address's fragment."""
    return {k: v[0] for k, v in parse_qs(urlsplit(page_href).fragment).items()}
