"""The upload rate limit as the daemon holds it: rebuilt from the buffer whenever what it
remembers could differ from what the buffer says.

The limiter (ratelimit.py) keeps each source's recent eligibility times in memory. The
buffer keeps them too (`eligible_ms`, `received_ms`), so at start, after a mode change
(pending events may have become local) and after the buffer is cleared, the limiter is
read back from it: a restart does not hand every source a fresh window, and a backlog that
no longer exists does not refuse new events.

New rules (a reload, or a restart with another config) place the events still waiting
again, oldest first, as if they arrived now: a looser rule or `off` lets them go sooner
(they kept waiting for a rule no longer in force, behind newer events the new rule let
through), a tighter one spreads them out, and what a source then has waiting beyond its
backlog cap is kept local, as any event past it is. The buffer records which rules placed
what waits in it (meta `rate_limit_rules`), so a start under the same rules only reads the
limiter back.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from itertools import groupby

from agent_telemetryd.config import Config
from agent_telemetryd.consent import ConsentState
from agent_telemetryd.context import DaemonContext
from agent_telemetryd.lazy_log import get_logger
from agent_telemetryd.parts import Started
from agent_telemetryd.ratelimit import PLACED_UNDER, UploadRateLimiter, placed_under
from agent_telemetryd.store import queries, upload_queries
from agent_telemetryd.store.buffer import Buffer

log = get_logger("agent_telemetryd.ratelimit")

# The limiter's `on_clock_back(back_ms, now_ms)`.
ClockBack = Callable[[int, int], None]


def _rules_key(config: Config) -> str:
    return placed_under(config.rate_limit, config.rate_limit_backlog)


async def seeded_limiter(
    config: Config, buffer: Buffer | None, on_clock_back: ClockBack | None = None
) -> UploadRateLimiter | None:
    """A limiter for `config`'s rules that remembers what the buffer says; None when off."""
    if not config.rate_limit:
        return None
    limiter = UploadRateLimiter(
        config.rate_limit, config.rate_limit_backlog, on_clock_back=on_clock_back
    )
    if buffer is None:
        return limiter
    now_ms = time.time_ns() // 1_000_000
    since_ms = now_ms - _longest_ms(config)
    history = await buffer.read(
        lambda conn: upload_queries.eligibility_history(conn, since_ms, now_ms)
    )
    _seed(limiter, history, now_ms)
    if history:
        log.info("rate_limit_restored", events=len(history))
    return limiter


def _longest_ms(config: Config) -> int:
    return int(max(rule.per_seconds for rule in config.rate_limit) * 1000)


def _seed(limiter: UploadRateLimiter, history: list[tuple[str, int, str]], now_ms: int) -> None:
    for source, group in groupby(history, key=lambda row: row[0]):
        rows = list(group)
        limiter.seed(source, [at for _, at, _ in rows], now_ms, [uuid for _, _, uuid in rows])


@dataclass(frozen=True)
class Replanned:
    """What new rules made of the events that were waiting."""

    waiting: int = 0  # events that waited under the old rules
    now: int = 0  # of them, eligible at once under the new ones
    later: int = 0  # still waiting, until a time the new rules give
    kept_local: int = 0  # beyond their source's backlog now: rate_limited for good

    def note(self) -> str | None:
        """One line for the reload's reply, or None when nothing waited."""
        if not self.waiting:
            return None
        parts = [f"{self.now} may go now", f"{self.later} still wait"]
        if self.kept_local:
            parts.append(f"{self.kept_local} past the backlog cap are kept local for good")
        return (
            f"the {self.waiting} events waiting for the rate limit were placed again under"
            f" the new rules: {', '.join(parts)}"
        )


def _replan(
    conn: sqlite3.Connection, config: Config, now_ms: int, on_clock_back: ClockBack
) -> tuple[UploadRateLimiter | None, Replanned]:
    """On the writer thread, in one transaction: the limiter for `config`'s rules, with the
    waiting events placed again in it and their new times written."""
    waiting = upload_queries.waiting_rows(conn, now_ms)
    queries.set_meta(conn, PLACED_UNDER, _rules_key(config))
    if not config.rate_limit:
        upload_queries.reschedule(conn, [(row_id, now_ms) for row_id, _, _ in waiting])
        return None, Replanned(len(waiting), now=len(waiting))
    limiter = UploadRateLimiter(
        config.rate_limit, config.rate_limit_backlog, on_clock_back=on_clock_back
    )
    since_ms = now_ms - _longest_ms(config)
    history = upload_queries.eligibility_history(conn, since_ms, now_ms, settled_only=True)
    _seed(limiter, history, now_ms)
    times = [(row_id, limiter(source, now_ms, uuid)) for row_id, source, uuid in waiting]
    upload_queries.reschedule(conn, times)
    kept_local = sum(1 for _, at in times if at is None)
    now = sum(1 for _, at in times if at is not None and at <= now_ms)
    return limiter, Replanned(len(waiting), now, len(waiting) - now - kept_local, kept_local)


async def apply_new_rules(context: DaemonContext) -> Replanned:
    """The running config's rules, for the events still waiting as for those to come."""
    if context.ingestor is None:
        return Replanned()
    buffer = context.buffer
    if buffer is None or not context.consent.uploads:
        # Nothing waits outside mode upload (leaving it made every pending event local),
        # and in `off` nothing is written, not even which rules placed what.
        await reseed(context)
        return Replanned()
    config, now_ms = context.config, time.time_ns() // 1_000_000
    # On the writer thread, after every row already handed to it: those are placed too.
    on_clock_back = _moving_waiting_events(context)
    limiter, replanned = await buffer.writer.run(
        lambda conn: _replan(conn, config, now_ms, on_clock_back)
    )
    context.ingestor.set_upload_gate(limiter)
    if replanned.waiting:
        log.info(
            "rate_limit_replanned",
            waiting=replanned.waiting,
            now=replanned.now,
            later=replanned.later,
            kept_local=replanned.kept_local,
        )
    return replanned


async def reseed(context: DaemonContext) -> None:
    """Read the limiter back from the buffer, with the running config's rules."""
    if context.ingestor is None:
        return
    context.ingestor.set_upload_gate(
        await seeded_limiter(context.config, context.buffer, _moving_waiting_events(context))
    )


def _moving_waiting_events(context: DaemonContext) -> ClockBack:
    """What the limiter calls when the clock was set back: the waiting events' stored times
    move back as far, on the writer thread after the rows already handed to it and before
    those of the arrival under way (placed by the new clock, they must not move)."""

    def clock_went_back(back_ms: int, now_ms: int) -> None:
        log.warning("clock_set_back", seconds=round(back_ms / 1000, 3))
        if context.buffer is None:
            return
        moved = context.buffer.writer.run_soon(
            lambda conn: upload_queries.shift_waiting(conn, back_ms, now_ms)
        )
        moved.add_done_callback(_log_moved)

    return clock_went_back


def _log_moved(moved: asyncio.Future[int]) -> None:
    if moved.cancelled():
        return
    error = moved.exception()
    if error is not None:
        # They wait as long again as the clock went back; nothing is lost.
        log.error("rate_limit_times_not_moved", error=type(error).__name__)
    elif moved.result():
        log.info("rate_limit_times_moved", events=moved.result())


async def start(context: DaemonContext) -> Started:
    """Seed the limiter now (placing what waits again if the config's rules are not those
    it was placed under: the config changed while the daemon was down), and again after
    each mode change; after a clear, it forgets what waited and keeps what went."""
    buffer = context.buffer
    placed_under = (
        await buffer.read(lambda conn: queries.get_meta(conn, PLACED_UNDER))
        if buffer is not None
        else None
    )
    if buffer is not None and placed_under != _rules_key(context.config):
        await apply_new_rules(context)
    else:
        await reseed(context)

    async def on_mode_change(before: ConsentState, after: ConsentState) -> None:
        # Into upload: the buffer records the rules what will wait is placed under.
        await (apply_new_rules(context) if after.uploads else reseed(context))

    @contextlib.asynccontextmanager
    async def reseed_after_clear() -> AsyncIterator[None]:
        try:
            yield
        finally:
            limiter = context.ingestor.upload_gate if context.ingestor is not None else None
            if isinstance(limiter, UploadRateLimiter):
                # What waited is gone with the buffer, but what went is still at the
                # backend: read back from the fresh buffer, the window would be empty, and
                # every source could send its whole burst again at once.
                limiter.forget_waiting(time.time_ns() // 1_000_000)
            else:
                await reseed(context)

    context.mode_listeners.append(on_mode_change)
    context.clear_guards.append(reseed_after_clear)
    return Started()
