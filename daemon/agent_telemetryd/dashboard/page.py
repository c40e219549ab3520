"""The page, two ways: served live (assets by URL) or as one self-contained report file."""

from __future__ import annotations

import base64
import hashlib
from functools import cache
from importlib import resources
from typing import Any

import orjson

# What the daemon serves under /dashboard/assets/: library code and the page's own
# scripts and style, no data — so they need no token. dashboard.js is the core (helpers,
# the address's state, data access, the router); each view has a script of its own.
SCRIPTS = (
    "uPlot.iife.min.js",
    "dashboard.js",
    "overview.js",
    "agents.js",
    "runs.js",
    "explore.js",
    "metrics.js",
)
STYLES = ("uPlot.min.css", "dashboard.css")
ASSETS: dict[str, str] = {
    **{name: "text/javascript" for name in SCRIPTS},
    **{name: "text/css" for name in STYLES},
}

# The live page may talk to its own origin only; no inline code at all.
LIVE_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self';"
    " img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


@cache
def asset(name: str) -> str:
    if name not in ASSETS and name != "dashboard.html":
        raise KeyError(name)
    return (resources.files("agent_telemetryd.dashboard") / "assets" / name).read_text("utf-8")


def _fill(mode: str, title: str, csp: str, styles: str, scripts: str, data: str) -> str:
    html = asset("dashboard.html")
    for marker, value in (
        ("<!--CSP-->", csp),
        ("<!--TITLE-->", title),
        ("<!--MODE-->", mode),
        ("<!--STYLES-->", styles),
        ("<!--DATA-->", data),
        ("<!--SCRIPTS-->", scripts),
    ):
        html = html.replace(marker, value)
    return html


def live_page() -> str:
    """The dashboard the daemon serves; its script fetches /dashboard/api/all."""
    styles = "\n".join(f'<link rel="stylesheet" href="/dashboard/assets/{n}">' for n in STYLES)
    scripts = "\n".join(f'<script src="/dashboard/assets/{n}"></script>' for n in SCRIPTS)
    return _fill("live", "dashboard", "", styles, scripts, "")


def embed_json(data: Any) -> str:
    """JSON safe inside a <script> element: no `</script>` or `<!--` can end it early.

    Encoded as the live dashboard's answers are (orjson): a sum that overflowed to
    infinity, or a NaN, is null there; json.dumps wrote `Infinity`, which JSON.parse
    refuses, and the report opened on nothing but a load error."""
    text = orjson.dumps(data, option=orjson.OPT_NON_STR_KEYS).decode()
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _sha256(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


def report_page(data: dict[str, Any]) -> str:
    """One file, nothing fetched: library, script, style and data all inline.

    Its CSP allows exactly these inline blocks (by hash) and no connection at all, so
    even a bug cannot make the file reach the network.
    """
    styles = [asset(n) for n in STYLES]
    scripts = [asset(n) for n in SCRIPTS]
    csp = (
        "default-src 'none'; img-src data:; connect-src 'none'; base-uri 'none';"
        f" form-action 'none'; script-src {' '.join(_sha256(s) for s in scripts)};"
        f" style-src {' '.join(_sha256(s) for s in styles)}"
    )
    return _fill(
        "report",
        "report",
        f'<meta http-equiv="Content-Security-Policy" content="{csp}">',
        "\n".join(f"<style>{s}</style>" for s in styles),
        "\n".join(f"<script>{s}</script>" for s in scripts),
        f'<script id="dashboard-data" type="application/json">{embed_json(data)}</script>',
    )
