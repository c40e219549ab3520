"""The uploader in process, every outside input given by the test: a real buffer file, a
real loopback PostHog double, and the clock, sleep and randomness the uploader is handed.
Time is driven, not waited for: a 429 asking for 7 s costs the test nothing."""

from __future__ import annotations

import asyncio
import time
import uuid as uuid_module
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from agent_telemetry._wire import format_timestamp
from agent_telemetryd import __version__
from agent_telemetryd.consent import ConsentState
from agent_telemetryd.senders.factory import new_session
from agent_telemetryd.senders.posthog import PostHogSender
from agent_telemetryd.store.buffer import Buffer
from agent_telemetryd.store.rows import EventRow, UploadState
from agent_telemetryd.upload import receipts
from agent_telemetryd.upload.backoff import Backoff
from agent_telemetryd.upload.flush import UploadSettings
from agent_telemetryd.upload.uploader import Uploader
from tests.fakes.backend import Scripted
from tests.fakes.posthog_backend import FakePostHog

NOW = 1_800_000_000.0  # the injected clock's time, 2027-01-15T08:00:00Z
UPLOADING = ConsentState("upload", "env", "AGENT_TELEMETRY_MODE is set")
LOCAL = ConsentState("local", "command", "set by agent-telemetry")


@pytest.fixture
def posthog() -> Iterator[FakePostHog]:
    backend = FakePostHog().start()
    yield backend
    backend.stop()


@pytest.fixture
async def buffer(tmp_path: Path) -> AsyncIterator[Buffer]:
    opened = await Buffer.open(
        tmp_path / "buffer.sqlite3", max_events=10_000, max_bytes=10**9, retention_days=90
    )
    yield opened
    await opened.close()


async def _pending(buffer: Buffer, count: int) -> list[str]:
    uuids = [str(uuid_module.uuid4()) for _ in range(count)]
    rows = [
        EventRow(
            uuid=value,
            event="agent.run.completed",
            ts_ms=int(NOW * 1000),
            received_ms=int(NOW * 1000),
            properties='{"n": 1}',
            agent="tester",
            pid=None,
            transport="http",
            consent="upload",
            upload=UploadState.PENDING.value,
            anonymous_id=buffer.anonymous_id,
            daemon_version=__version__,
        )
        for value in uuids
    ]
    done = buffer.writer.submit(rows, ack=True)
    assert done is not None
    assert (await done).inserted == count
    return uuids


async def test_backoff_and_retry_after_are_slept_on_the_injected_clock(
    posthog: FakePostHog, buffer: Buffer
) -> None:
    """503 then 429 (Retry-After: 7) then 200: the uploader asks its sleep for the backoff
    step and then for the backend's 7 s, and stamps report and receipts with its clock."""
    posthog.script = [Scripted(503), Scripted(429, headers={"Retry-After": "7"})]
    uuids = await _pending(buffer, 5)
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    async with new_session() as session:
        uploader = _uploader(
            session, posthog, buffer, sleep=sleep, batch_size=100, backoff=Backoff(base=1.0)
        )
        report = await uploader.flush("test")

    # Equal jitter on the first step of 1 s: half fixed, half times rand.
    assert slept == [0.75, 7.0]
    assert (report.ok, report.events_sent, report.requests) == (True, 5, 3)
    stamp = format_timestamp(int(NOW * 1000))
    assert report.started_at == report.finished_at == stamp
    assert [e["uuid"] for e in posthog.accepted_events()] == uuids
    kept = await buffer.read(receipts.recent)
    assert [(r["status"], r["time"]) for r in kept] == [
        ("accepted", stamp),
        ("retry", stamp),
        ("retry", stamp),
    ]


async def test_consent_read_before_each_request_stops_the_flush(
    posthog: FakePostHog, buffer: Buffer
) -> None:
    """Upload turned off while a retry waits: no further request; the events stay pending."""
    posthog.script = [Scripted(503)]
    await _pending(buffer, 3)
    consent = [UPLOADING]

    async def sleep(seconds: float) -> None:
        consent[0] = LOCAL  # the user ran `disable` during the backoff

    async with new_session() as session:
        uploader = _uploader(
            session, posthog, buffer, consent=lambda: consent[0], sleep=sleep, rand=0.0
        )
        report = await uploader.flush("test")

    assert report.requests == 1 and report.events_sent == 0
    assert report.stopped is not None and "turned off" in report.stopped
    assert [r.status for r in posthog.batch_requests()] == [503]
    counts = await buffer.read(
        lambda conn: conn.execute("SELECT upload, count(*) FROM events GROUP BY 1").fetchall()
    )
    assert counts == [("pending", 3)]


async def test_upload_turned_off_while_the_id_is_recorded_sends_nothing(
    posthog: FakePostHog, buffer: Buffer
) -> None:
    """`disable` lands while the flush commits the anonymous id it is about to send under
    (the last write before the request): the consent was read before that write, yet
    the request must not leave. Nothing reaches the backend; the flush says why."""
    await _pending(buffer, 3)
    consent = [UPLOADING]

    class Writer:
        def __getattr__(self, name: str) -> Any:
            return getattr(buffer.writer, name)

        async def run(self, work: Callable[..., Any]) -> Any:
            consent[0] = LOCAL  # the user ran `disable` while this write waited
            return await buffer.writer.run(work)

    class Buffered:
        writer = Writer()

        def __getattr__(self, name: str) -> Any:
            return getattr(buffer, name)

    held = Buffered()
    async with new_session() as session:
        uploader = _uploader(session, posthog, held, consent=lambda: consent[0])
        report = await uploader.flush("command")

    assert report.stopped is not None and "turned off" in report.stopped
    assert (report.requests, report.events_sent) == (0, 0)
    assert posthog.batch_requests() == []


async def test_a_stop_while_the_report_is_written_still_answers_whoever_waits(
    posthog: FakePostHog, buffer: Buffer
) -> None:
    """`disable` lands just as a flush ended on its own and is writing its report: the
    `flush` command waiting on it still gets that report, not a dropped connection."""
    posthog.script = [Scripted(503)]
    await _pending(buffer, 3)
    consent = [UPLOADING]
    reporting, release = asyncio.Event(), asyncio.Event()

    class ReportHeldBack:
        """The real buffer, whose reads wait once upload is off: the report's count."""

        def __getattr__(self, name: str) -> Any:
            return getattr(buffer, name)

        async def read(self, query: Callable[..., Any]) -> Any:
            if consent[0] is LOCAL:
                reporting.set()
                await release.wait()
            return await buffer.read(query)

    async def sleep(seconds: float) -> None:
        consent[0] = LOCAL

    held_back = ReportHeldBack()
    async with new_session() as session:
        uploader = _uploader(
            session, posthog, held_back, consent=lambda: consent[0], sleep=sleep, rand=0.0
        )
        waiting = asyncio.create_task(uploader.flush("command"))
        await reporting.wait()
        stopping = asyncio.create_task(uploader.stop("upload was turned off"))
        await asyncio.sleep(0)
        release.set()
        report = await waiting
        await stopping

    assert report.requests == 1 and report.events_sent == 0
    assert report.stopped is not None and "turned off" in report.stopped


async def _no_sleep(seconds: float) -> None:
    pass


def _uploader(
    session: Any,
    posthog: FakePostHog,
    buffer: Any,
    clock: Callable[[], float] = lambda: NOW,
    *,
    consent: Callable[[], Any] = lambda: UPLOADING,
    sleep: Callable[[float], Awaitable[None]] = _no_sleep,
    rand: float = 0.5,
    **settings: Any,
) -> Uploader:
    """An uploader to the fake PostHog over `buffer` (the real one, or one that wraps it)."""
    return Uploader(
        PostHogSender(session, host=posthog.url, api_key=posthog.api_key),
        UploadSettings(**settings),
        consent=consent,
        buffer=lambda: buffer,
        clock=clock,
        sleep=sleep,
        rand=lambda: rand,
    )


async def test_a_retry_after_longer_than_a_flush_holds_every_later_flush(
    posthog: FakePostHog, buffer: Buffer
) -> None:
    """429 with Retry-After: 3600 ends the flush. Ten seconds on, the scheduled flush
    skips and a flush asked for says until when; neither sends. An hour on, the next
    flush sends, and the wait is gone."""
    posthog.script = [Scripted(429, headers={"Retry-After": "3600"})]
    uuids = await _pending(buffer, 3)
    now = [NOW]
    until = format_timestamp(int((NOW + 3600) * 1000))
    async with new_session() as session:
        uploader = _uploader(session, posthog, buffer, lambda: now[0])
        first = await uploader.flush("schedule")
        assert first.error is not None and "asked to wait 3600s" in first.error
        assert first.not_before == until

        now[0] = NOW + 10
        scheduled = await uploader.flush("schedule")
        assert (scheduled.ok, scheduled.requests, scheduled.not_before) == (True, 0, until)
        assert scheduled.skipped is not None and f"before {until} (in 3590s)" in scheduled.skipped
        asked = await uploader.flush("command")
        assert asked.error is not None and asked.requests == 0
        assert f"not contacted again before {until}" in asked.error
        assert "it asked to wait 3600s (HTTP 429)" in asked.error
        assert len(posthog.batch_requests()) == 1

        now[0] = NOW + 3600
        later = await uploader.flush("schedule")
    assert (later.ok, later.events_sent, later.not_before) == (True, 3, None)
    assert [e["uuid"] for e in posthog.accepted_events()] == uuids
    assert await buffer.read(_backend_wait) is None


async def test_a_backend_that_stays_down_is_left_alone_for_its_next_backoff_step(
    posthog: FakePostHog, buffer: Buffer
) -> None:
    """503 to every try: the flush ends after its tries and keeps the step it would have
    waited next, so a scheduled flush a moment later sends nothing."""
    posthog.answer_always = Scripted(503)
    await _pending(buffer, 2)
    now = [NOW]
    async with new_session() as session:
        uploader = _uploader(
            session, posthog, buffer, lambda: now[0], max_attempts=3, backoff=Backoff(base=4.0)
        )
        first = await uploader.flush("schedule")
        assert first.error is not None and "unavailable (HTTP 503) after 3 tries" in first.error
        # The third step of 4 s doubling, equal jitter at rand 0.5: 16 * 0.75 = 12 s.
        assert first.not_before == format_timestamp(int((NOW + 12) * 1000))
        now[0] = NOW + 5
        assert (await uploader.flush("schedule")).requests == 0
        now[0] = NOW + 12
        assert (await uploader.flush("schedule")).requests == 3
    wait = await buffer.read(_backend_wait)
    assert wait is not None and wait.reason == "it was unavailable (HTTP 503) 3 times in a row"


async def test_a_request_cancelled_in_flight_gets_a_receipt_stamped_when_it_left(
    posthog: FakePostHog, buffer: Buffer
) -> None:
    """Upload turned off while a request waits for its answer: the request is cancelled,
    and its receipt says so, with the time it left and the hash of what left."""
    posthog.hold_after = 0
    await _pending(buffer, 4)
    now = [NOW]
    async with new_session() as session:
        uploader = _uploader(session, posthog, buffer, lambda: now[0])
        flushing = asyncio.create_task(uploader.flush("command"))
        assert await asyncio.to_thread(posthog.arrived.wait, 15)
        now[0] = NOW + 30
        await uploader.stop("upload was turned off during the flush; no further request")
        report = await flushing
        posthog.release.set()
    assert report.stopped is not None and report.requests == 0
    [kept] = await buffer.read(receipts.recent)
    assert (kept["status"], kept["events"], kept["http_status"]) == ("cancelled", 4, None)
    assert kept["time"] == format_timestamp(int(NOW * 1000))
    assert len(kept["body_sha256"]) == 64
    assert "upload was turned off" in kept["error"] and "the backend may have it" in kept["error"]


async def test_a_request_without_answer_is_stamped_when_it_left(
    posthog: FakePostHog, buffer: Buffer
) -> None:
    """A request that times out: its receipt says `no answer`, at the time it was sent,
    not when the client gave up on it."""
    posthog.delay = 2.0
    await _pending(buffer, 2)
    started = time.monotonic()

    def clock() -> float:  # a minute of this clock for every real second
        return NOW + (time.monotonic() - started) * 60

    timeout = aiohttp.ClientTimeout(total=0.5)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        uploader = _uploader(session, posthog, buffer, clock, max_attempts=1)
        report = await uploader.flush("command")
    assert report.error is not None and "unavailable (timed out)" in report.error
    [kept] = await buffer.read(receipts.recent)
    assert (kept["status"], kept["http_status"], kept["error"]) == ("no answer", None, "timed out")
    sent_at = datetime.fromisoformat(kept["time"]).timestamp()
    assert sent_at < NOW + 15  # sent within a quarter of a real second; answered 30 s later


def _backend_wait(conn: Any) -> Any:
    from agent_telemetryd.upload import backend_wait

    return backend_wait.read(conn)
