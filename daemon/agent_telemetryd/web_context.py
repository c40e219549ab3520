"""The daemon's context as its HTTP handlers reach it: one typed aiohttp AppKey.

Kept apart from context.py, which the daemon imports at startup, because making an
AppKey imports aiohttp, and aiohttp is loaded only when the first HTTP connection arrives.
"""

from __future__ import annotations

from aiohttp import web

from agent_telemetryd.context import DaemonContext

CONTEXT = web.AppKey("context", DaemonContext)
