"""The upload schedule: one APScheduler (3.x) interval job, jittered.

The job is paused while the mode is not `upload`, so `next_upload` in status is null
then, and an idle daemon has nothing scheduled but the hourly tick it is told to run.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from apscheduler.job import Job
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger

from agent_telemetryd.upload.uploader import Uploader

JOB_ID = "upload"
MAX_JITTER_SECONDS = 300.0


def jitter_for(interval: float) -> float:
    """A tenth of the interval, at most five minutes: installs started together (a fleet
    rebooted at once) spread their uploads instead of arriving at the same second."""
    return min(interval / 10, MAX_JITTER_SECONDS)


class UploadSchedule:
    def __init__(self, uploader: Uploader, interval: float) -> None:
        self._uploader = uploader
        self.interval = interval
        self._scheduler = AsyncIOScheduler(event_loop=asyncio.get_running_loop(), timezone=UTC)
        self._job: Job | None = None

    def start(self, *, active: bool) -> None:
        self._scheduler.start()
        self._job = self._scheduler.add_job(
            self._tick,
            IntervalTrigger(seconds=self.interval, jitter=jitter_for(self.interval)),
            id=JOB_ID,
            # A run missed while the machine slept is run once, not once per missed slot.
            coalesce=True,
            max_instances=1,
            misfire_grace_time=None,
        )
        if not active:
            self._job.pause()

    async def _tick(self) -> None:
        await self._uploader.flush("schedule")

    def set_active(self, active: bool) -> None:
        if self._job is None:
            return
        if active:
            self._job.resume()
        else:
            self._job.pause()

    def set_interval(self, interval: float, *, active: bool) -> None:
        """Run every `interval` seconds from now on (a reload); a paused job stays paused."""
        self.interval = interval
        if self._job is None:
            return
        # Rescheduling gives a paused job a next run time, which resumes it: pause again.
        self._job.reschedule(IntervalTrigger(seconds=interval, jitter=jitter_for(interval)))
        if not active:
            self._job.pause()

    def defer(self, until: datetime) -> None:
        """Run no sooner than `until` (the backend asked not to be contacted before): the
        next run moves there, so `next_upload` says when the upload really comes."""
        job = self._scheduler.get_job(JOB_ID) if self._job is not None else None
        if job is None or job.next_run_time is None:  # paused: resumed runs check anyway
            return
        if job.next_run_time < until:
            job.modify(next_run_time=until)

    def next_run(self) -> datetime | None:
        if self._job is None:
            return None
        job = self._scheduler.get_job(JOB_ID)
        return job.next_run_time if job is not None else None

    def shutdown(self) -> None:
        if self._scheduler.running:
            self._scheduler.shutdown(wait=False)
