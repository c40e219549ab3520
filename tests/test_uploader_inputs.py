"""The uploader in process, every outside input given by the test: a real buffer file, a
real loopback PostHog double, and the clock, sleep and randomness the uploader is handed.
Time is driven, not waited for: a 429 asking for 7 s costs the test nothing."""

from __future__ import annotations

import asyncio
import uuid as uuid_module
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

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
        uploader = Uploader(
            PostHogSender(session, host=posthog.url, api_key=posthog.api_key),
            UploadSettings(batch_size=100, backoff=Backoff(base=1.0)),
            consent=lambda: UPLOADING,
            buffer=lambda: buffer,
            clock=lambda: NOW,
            sleep=sleep,
            rand=lambda: 0.5,
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
        uploader = Uploader(
            PostHogSender(session, host=posthog.url, api_key=posthog.api_key),
            UploadSettings(),
            consent=lambda: consent[0],
            buffer=lambda: buffer,
            clock=lambda: NOW,
            sleep=sleep,
            rand=lambda: 0.0,
        )
        report = await uploader.flush("test")

    assert report.requests == 1 and report.events_sent == 0
    assert report.stopped is not None and "turned off" in report.stopped
    assert [r.status for r in posthog.batch_requests()] == [503]
    counts = await buffer.read(
        lambda conn: conn.execute("SELECT upload, count(*) FROM events GROUP BY 1").fetchall()
    )
    assert counts == [("pending", 3)]


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
        uploader = Uploader(
            PostHogSender(session, host=posthog.url, api_key=posthog.api_key),
            UploadSettings(),
            consent=lambda: consent[0],
            buffer=lambda: held_back,  # type: ignore[arg-type,return-value]
            clock=lambda: NOW,
            sleep=sleep,
            rand=lambda: 0.0,
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
