"""The upload rate limit as the daemon holds it: rebuilt from the buffer whenever what it
remembers could differ from what the buffer says.

The limiter (ratelimit.py) keeps each source's recent eligibility times in memory. The
buffer keeps them too (`eligible_ms`, `received_ms`), so at start, after a reload that
changes the rules, after a mode change (pending events may have become local) and after
the buffer is cleared, the limiter is read back from it: a restart does not hand every
source a fresh window, and a backlog that no longer exists does not refuse new events.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from itertools import groupby

from agent_telemetryd.config import Config
from agent_telemetryd.consent import ConsentState
from agent_telemetryd.context import DaemonContext
from agent_telemetryd.lazy_log import get_logger
from agent_telemetryd.parts import Started
from agent_telemetryd.ratelimit import UploadRateLimiter
from agent_telemetryd.store import upload_queries
from agent_telemetryd.store.buffer import Buffer

log = get_logger("agent_telemetryd.ratelimit")


async def seeded_limiter(config: Config, buffer: Buffer | None) -> UploadRateLimiter | None:
    """A limiter for `config`'s rules that remembers what the buffer says; None when off."""
    if not config.rate_limit:
        return None
    limiter = UploadRateLimiter(config.rate_limit, config.rate_limit_backlog)
    if buffer is None:
        return limiter
    now_ms = time.time_ns() // 1_000_000
    longest_ms = int(max(rule.per_seconds for rule in config.rate_limit) * 1000)
    history = await buffer.read(
        lambda conn: upload_queries.eligibility_history(conn, now_ms - longest_ms)
    )
    for source, group in groupby(history, key=lambda row: row[0]):
        rows = list(group)
        limiter.seed(source, [at for _, at, _ in rows], now_ms, [uuid for _, _, uuid in rows])
    if history:
        log.info("rate_limit_restored", events=len(history))
    return limiter


async def reseed(context: DaemonContext) -> None:
    """Read the limiter back from the buffer, with the running config's rules."""
    if context.ingestor is None:
        return
    context.ingestor.set_upload_gate(await seeded_limiter(context.config, context.buffer))


async def start(context: DaemonContext) -> Started:
    """Seed the limiter now, and again after each mode change and clear."""
    await reseed(context)

    async def on_mode_change(before: ConsentState, after: ConsentState) -> None:
        await reseed(context)

    @contextlib.asynccontextmanager
    async def reseed_after_clear() -> AsyncIterator[None]:
        try:
            yield
        finally:
            await reseed(context)

    context.mode_listeners.append(on_mode_change)
    context.clear_guards.append(reseed_after_clear)
    return Started()
