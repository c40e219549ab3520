"""`GET /team` and `/team/assets/{name}`: the page, the chart library and the page's own
script and style. None of them holds data, so none needs a key; the page asks for a read
key and sends it, in a header, to the analytics API (which checks it).
"""

from __future__ import annotations

from functools import cache
from importlib import resources

from aiohttp import web

from agent_telemetry_server.responses import ApiError

routes = web.RouteTableDef()

ASSETS: dict[str, str] = {
    "team.js": "text/javascript",
    "team.css": "text/css",
    "uPlot.iife.min.js": "text/javascript",
    "uPlot.min.css": "text/css",
}
# Own origin only, no inline code, no framing: a bug in the page cannot send the key
# anywhere else, and another site cannot frame the page to trick a user into typing it.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self';"
    " img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
_HEADERS = {
    "Content-Security-Policy": CSP,
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
}


@cache
def asset(name: str) -> bytes:
    return (resources.files("agent_telemetry_server.team") / "assets" / name).read_bytes()


@routes.get("/team")
async def page(_request: web.Request) -> web.Response:
    return web.Response(
        body=asset("team.html"),
        content_type="text/html",
        charset="utf-8",
        headers={**_HEADERS, "Cache-Control": "no-cache"},
    )


@routes.get("/team/assets/{name}")
async def static_asset(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    if name not in ASSETS:
        raise ApiError(404, "no such asset")
    return web.Response(
        body=asset(name),
        content_type=ASSETS[name],
        charset="utf-8",
        headers={**_HEADERS, "Cache-Control": "no-cache"},
    )
