"""`GET /v1/debug/modules` on api.sock: the modules the daemon has loaded, and what it holds.

What the daemon imports is what it weighs in memory: this says whether an optional part
(gRPC, OTLP decoding, APScheduler, a sender, the dashboard) stayed out of a daemon that
does not use it, without reading /proc.

- `modules`: top-level module names;
- `under` (with `?under=agent_telemetryd.senders`): every loaded module of that package;
- `client_sessions`: aiohttp client sessions alive. `import aiohttp` loads its client
  modules (and builds their TLS contexts) whatever the daemon does, so a loaded
  `aiohttp.client` says nothing; an open session means a sender made one.
"""

from __future__ import annotations

import gc
import sys

import aiohttp
from aiohttp import web

routes = web.RouteTableDef()


@routes.get("/v1/debug/modules")
async def get_modules(request: web.Request) -> web.Response:
    names = list(sys.modules)
    body: dict[str, object] = {"modules": sorted({name.partition(".")[0] for name in names})}
    under = request.query.get("under")
    if under:
        body["under"] = sorted(n for n in names if n == under or n.startswith(under + "."))
    body["client_sessions"] = sum(
        1 for item in gc.get_objects() if isinstance(item, aiohttp.ClientSession)
    )
    return web.json_response(body)
