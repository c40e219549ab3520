"""`GET /v1/debug/modules` on api.sock: the top-level modules the daemon has loaded.

What the daemon imports is what it weighs in memory: this says whether an optional part
(gRPC, say) stayed out of a daemon that does not use it, without reading /proc.
"""

from __future__ import annotations

import sys

from aiohttp import web

routes = web.RouteTableDef()


@routes.get("/v1/debug/modules")
async def get_modules(request: web.Request) -> web.Response:
    loaded = sorted({name.partition(".")[0] for name in list(sys.modules)})
    return web.json_response({"modules": loaded})
