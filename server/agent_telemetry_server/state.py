"""Typed application state (aiohttp AppKeys), shared by the app factory and the routes."""

from __future__ import annotations

import asyncpg
from aiohttp import web
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from agent_telemetry_server.config import Settings
from agent_telemetry_server.metrics import Metrics
from agent_telemetry_server.ratelimit import RateLimiter

SETTINGS = web.AppKey("settings", Settings)
METRICS = web.AppKey("metrics", Metrics)
POOL = web.AppKey("pool", asyncpg.Pool)
SCHEDULER = web.AppKey("scheduler", AsyncIOScheduler)
KEY_LIMITER = web.AppKey("key_limiter", RateLimiter)
ANONYMOUS_ID_LIMITER = web.AppKey("anonymous_id_limiter", RateLimiter)
