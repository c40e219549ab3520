"""`GET /v1/debug/modules` on api.sock: the modules the daemon has loaded, and what it holds.

What the daemon imports is what it weighs in memory: this says whether an optional part
(gRPC, OTLP decoding, APScheduler, a sender, the dashboard) stayed out of a daemon that
does not use it, without reading /proc.

- `modules`: top-level module names;
- `under` (with `?under=agent_telemetryd.senders`): every loaded module of that package;
- `before_http`: the same two as they were just before the first HTTP connection (this
  request, or an earlier one) had the daemon load aiohttp, with the listener it came to
  (`listener`) and when (`at`, Unix time). Asking here loads aiohttp, so this is how an
  idle daemon's own weight is seen: what its agents' NDJSON alone made it load;
- `client_sessions`: aiohttp client sessions alive. `import aiohttp` loads its client
  modules (and builds their TLS contexts) whatever the daemon does, so a loaded
  `aiohttp.client` says nothing; an open session means a sender made one.
"""

from __future__ import annotations

import gc
import sys
from collections.abc import Iterable
from typing import Any

import aiohttp
from aiohttp import web

from agent_telemetryd.web_context import CONTEXT

routes = web.RouteTableDef()


@routes.get("/v1/debug/modules")
async def get_modules(request: web.Request) -> web.Response:
    under = request.query.get("under")
    body: dict[str, object] = modules_report(list(sys.modules), under)
    first = request.app[CONTEXT].first_http
    body["before_http"] = (
        {
            "listener": first.listener,
            "at": first.at,
            **modules_report(first.modules_before, under),
        }
        if first is not None
        else None
    )
    body["client_sessions"] = sum(
        1 for item in gc.get_objects() if isinstance(item, aiohttp.ClientSession)
    )
    return web.json_response(body)


def modules_report(names: Iterable[str], under: str | None) -> dict[str, Any]:
    names = list(names)
    report: dict[str, Any] = {"modules": sorted({name.partition(".")[0] for name in names})}
    if under:
        report["under"] = sorted(n for n in names if n == under or n.startswith(under + "."))
    return report
