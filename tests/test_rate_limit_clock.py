"""A wall clock set back (an NTP step, a clock that ran ahead corrected) while events wait
for the upload rate limit: what was placed before the step happened as long ago as it did,
so a source's next events are not held until the clock catches up (nor kept local for good
once that wait fills the backlog), and the waiting events keep the wait they had."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from agent_telemetryd import ratelimit_state
from agent_telemetryd.config import load_config
from agent_telemetryd.config_values import RateRule
from agent_telemetryd.consent import ConsentState
from agent_telemetryd.context import DaemonContext
from agent_telemetryd.events import Limits
from agent_telemetryd.ingest import Ingestor, Source
from agent_telemetryd.ratelimit import UploadRateLimiter
from agent_telemetryd.store.buffer import Buffer

DEFAULT_RULES = [RateRule(60, 60.0), RateRule(1000, 3600.0)]
T0 = 1_800_000_000_000
HOUR = 3_600_000


def test_one_event_before_the_clock_went_back_an_hour_holds_nothing_after_it() -> None:
    told: list[tuple[int, int]] = []
    limiter = UploadRateLimiter(
        DEFAULT_RULES, backlog=100, on_clock_back=lambda *step: told.append(step)
    )
    assert limiter("agent", T0, "before") == T0
    now = T0 - HOUR
    placed = [limiter("agent", now + i, f"u{i}") for i in range(150)]
    assert told == [(HOUR, now)]
    # The event before the step was a moment ago: 59 more go at once, the rest wait a
    # minute or two, as they would have without the step; none is kept local.
    assert placed[:59] == [now + i for i in range(59)]
    assert None not in placed
    assert max(at for at in placed if at is not None) < now + 3 * 60_000
    # A retry of the event before the step still gets its (moved) place back.
    assert limiter("agent", now + 200, "before") == T0 - HOUR


def test_a_clock_going_forward_or_a_moment_back_is_not_a_step() -> None:
    told: list[tuple[int, int]] = []
    limiter = UploadRateLimiter(DEFAULT_RULES, on_clock_back=lambda *step: told.append(step))
    limiter("agent", T0)
    limiter("agent", T0 + 8 * HOUR)  # a laptop waking from sleep
    limiter("agent", T0 + 8 * HOUR - 500)  # two arrivals stamped a moment apart
    assert told == []


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def uploading(tmp_path: Path) -> AsyncIterator[tuple[DaemonContext, Clock]]:
    config = load_config(
        {"AGENT_TELEMETRY_HOME": str(tmp_path), "AGENT_TELEMETRY_RATE_LIMIT": "5/min"}
    )
    context = DaemonContext(config=config, consent=ConsentState("upload", "env", "test"))
    buffer = await Buffer.open(
        config.paths.database, max_events=10_000, max_bytes=10**9, retention_days=90
    )
    context.buffer = buffer
    clock = Clock(time.time())
    context.ingestor = Ingestor(
        limits=Limits(),
        mode=lambda: "upload",
        writer=lambda: buffer.writer,
        anonymous_id=lambda: buffer.anonymous_id,
        clock=clock,
    )
    await ratelimit_state.reseed(context)
    yield context, clock
    await buffer.close()


async def take(context: DaemonContext, count: int, first: int) -> None:
    assert context.ingestor is not None
    documents = [
        {"event": "agent.run.completed", "uuid": f"00000000-0000-4000-8000-{first + n:012d}"}
        for n in range(count)
    ]
    outcome = context.ingestor.accept_documents(
        documents, Source("http", agent="planner"), ack=True
    )
    assert outcome.pending is not None
    await outcome.pending


def waits(context: DaemonContext, clock: Clock) -> list[int | None]:
    """How long each stored event waits from the clock's now (ms), in arrival order."""
    assert context.buffer is not None
    conn = sqlite3.connect(context.config.paths.database)
    try:
        rows = conn.execute("SELECT eligible_ms FROM events ORDER BY id").fetchall()
    finally:
        conn.close()
    now = int(clock.now * 1000)
    return [None if at is None else at - now for (at,) in rows]


async def test_the_waiting_events_keep_their_wait_when_the_clock_is_set_back(
    uploading: tuple[DaemonContext, Clock],
) -> None:
    context, clock = uploading
    await take(context, 10, 0)  # 5 go at once, 5 wait a minute
    assert waits(context, clock)[5:] == [60_000] * 5

    clock.now -= 3600  # set back an hour
    await take(context, 1, 10)
    assert context.buffer is not None
    await context.buffer.writer.run(lambda conn: None)  # after the move, queued before it
    # Without the move, they would wait an hour and a minute, and the new one an hour more.
    assert waits(context, clock)[5:] == [60_000] * 5 + [120_000]


async def test_a_restart_after_the_clock_was_set_back_reads_what_it_stamped_as_just_now(
    uploading: tuple[DaemonContext, Clock],
) -> None:
    """Events received while the clock ran an hour ahead, read back at a start after it was
    corrected: they count as just sent, not as sent an hour from now."""
    context, clock = uploading
    clock.now = time.time() + 3600
    await take(context, 5, 0)  # the whole minute's five, at once
    clock.now = time.time()
    await ratelimit_state.reseed(context)  # what a start reads back
    await take(context, 1, 5)
    wait = waits(context, clock)[5]
    assert wait is not None and 0 < wait <= 60_000
