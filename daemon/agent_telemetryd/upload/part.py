"""The uploader as a part of the daemon: sender, schedule, routes, status, mode listener.

What it costs follows what the configuration uses: the sender (its module, the HTTP client
session) is made the first time it must act (`DeferredSender`), and APScheduler is loaded
the first time the mode is `upload`. A daemon in mode `local` with no sender loads neither.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import TYPE_CHECKING, Any

from agent_telemetryd.config import Config
from agent_telemetryd.consent import ConsentState
from agent_telemetryd.context import DaemonContext
from agent_telemetryd.idle import Busy
from agent_telemetryd.parts import Started
from agent_telemetryd.reload_plan import SENDER_SETTINGS
from agent_telemetryd.senders.factory import DeferredSender, SharedSession
from agent_telemetryd.store import upload_queries
from agent_telemetryd.upload import backend_wait
from agent_telemetryd.upload.backend_wait import BackendWait
from agent_telemetryd.upload.backoff import Backoff
from agent_telemetryd.upload.flush import UploadSettings
from agent_telemetryd.upload.uploader import STOPPING, Uploader

if TYPE_CHECKING:
    from aiohttp import web

NEW_BACKEND_STOP = "the reloaded config changed the backend or its keys; no further request"


def settings_from(config: Config) -> UploadSettings:
    base = config.upload_retry_base
    return UploadSettings(
        batch_size=config.batch_size,
        backoff=Backoff(base=base, cap=max(base, 60.0)),
        rate_limit=config.rate_limit,
        rate_limit_backlog=config.rate_limit_backlog,
        held=config.uploads_held,
    )


class Schedule:
    """The upload schedule, with APScheduler loaded only once uploads are first on."""

    def __init__(self, uploader: Uploader, interval: float) -> None:
        self._uploader = uploader
        self.interval = interval
        self._schedule: Any = None  # upload.scheduler.UploadSchedule, once loaded

    def set_active(self, active: bool) -> None:
        if self._schedule is not None:
            self._schedule.set_active(active)
        elif active:
            from agent_telemetryd.upload.scheduler import UploadSchedule

            self._schedule = UploadSchedule(self._uploader, self.interval)
            self._schedule.start(active=True)

    def set_interval(self, interval: float, *, active: bool) -> None:
        self.interval = interval
        if self._schedule is not None:
            self._schedule.set_interval(interval, active=active)

    def next_run(self) -> datetime | None:
        return self._schedule.next_run() if self._schedule is not None else None

    def defer(self, until: datetime) -> None:
        if self._schedule is not None:
            self._schedule.defer(until)

    def shutdown(self) -> None:
        if self._schedule is not None:
            self._schedule.shutdown()


class UploadPart:
    """The uploader and its schedule, as the daemon's listeners and idle timer see them."""

    def __init__(self, context: DaemonContext) -> None:
        self.context = context
        self.session = SharedSession()
        self.uploader = Uploader(
            DeferredSender(context.config, self.session),
            settings_from(context.config),
            consent=lambda: context.consent,
            buffer=lambda: context.buffer,
        )
        self.schedule = Schedule(self.uploader, context.config.upload_interval)
        self.uploader.on_finish.append(self._after_flush)

    def _after_flush(self) -> None:
        # A flush the backend asked to wait: the schedule waits as long (a scheduled run
        # before then would only find it waiting).
        report = self.uploader.last_report
        if report is not None and report.not_before:
            self.schedule.defer(datetime.fromisoformat(report.not_before))

    async def backend_wait(self) -> BackendWait | None:
        """The time the backend asked not to be contacted before, while it holds."""
        buffer = self.context.buffer
        if buffer is None:
            return None
        wait = await buffer.read(backend_wait.read)
        if wait is None or not wait.applies(self.uploader.sender.backend, int(time.time() * 1000)):
            return None
        return wait

    async def on_config_change(self, before: Config, after: Config) -> None:
        # A reload: the next flush uses the new sender and settings.
        uploader = self.uploader
        new_sender = any(getattr(before, name) != getattr(after, name) for name in SENDER_SETTINGS)
        if new_sender:
            uploader.reconfigure(DeferredSender(after, self.session), settings_from(after))
        elif settings_from(before) != settings_from(after):
            uploader.reconfigure(uploader.sender, settings_from(after))
        # Where events go, and whether they may go, take effect at once, as `disable`
        # does: a flush under way would otherwise send the rest of a backlog to a backend
        # (or with a key) the user has just taken out of the config. Its events stay
        # pending for the next flush.
        if new_sender:
            await uploader.stop(NEW_BACKEND_STOP)
        elif after.uploads_held is not None:
            await uploader.stop(after.uploads_held)
        if before.upload_interval != after.upload_interval:
            self.schedule.set_interval(after.upload_interval, active=self.context.consent.uploads)

    async def on_mode_change(self, before: ConsentState, after: ConsentState) -> None:
        self.schedule.set_active(after.uploads)
        if not after.uploads:
            await self.uploader.stop("upload was turned off during the flush; no further request")

    async def status_section(self) -> dict[str, Any]:
        # last_upload and rate_limited_by_source come from the buffer file (status.py),
        # so `status` shows them with the daemon down too; these are the live parts.
        next_run = self.schedule.next_run()
        uploader = self.uploader
        last = uploader.last_report
        wait = await self.backend_wait()
        return {
            "next_upload": (
                next_run.astimezone().isoformat(timespec="seconds") if next_run else None
            ),
            "upload": {
                "backend": uploader.sender.backend,
                "interval_seconds": self.schedule.interval,
                "batch_size": uploader.settings.batch_size,
                "flush_running": uploader.running,
                "last_flush": last.as_dict() if last is not None else None,
                # No upload reaches the backend before then (its Retry-After, or the
                # backoff after it stayed unavailable): why `next_upload` is no sooner.
                "not_before": wait.as_dict() if wait is not None else None,
            },
        }

    async def upload_due(self, quiet_until: float) -> Busy | None:
        """The idle timer's question: does an upload keep the daemon up?

        A flush under way does. So does the daemon's own scheduled upload when it falls
        within the next quiet period and has events to send: exiting just before it would
        leave them until the upload timer's next run, up to a whole interval later. One
        due later than that is the timer's to run: it starts the daemon for it."""
        if self.uploader.running:
            return Busy("a flush is running")  # its end starts the quiet period again
        next_run = self.schedule.next_run()
        buffer = self.context.buffer
        if next_run is None or buffer is None or not self.uploader.sender.sends:
            return None
        due = next_run.timestamp()
        if due > quiet_until:
            return None
        due_ms = int(due * 1000)
        if not await buffer.read(lambda conn: upload_queries.pending_page(conn, 0, 1, due_ms)):
            return None
        # Its end starts the quiet period again; asked again just after, should it not run.
        return Busy("an upload is due within the quiet period", max(due - time.time(), 0) + 1)

    async def stopping(self) -> None:
        """A shutdown's first step: a flush under way ends now, its request in flight
        abandoned (its events stay pending, sent again later), so a `flush` waiting for
        it gets its report within the drain; none starts after it."""
        await self.uploader.wind_down(STOPPING)

    async def close(self) -> None:
        self.schedule.shutdown()
        # Abandoning a request is safe: its events stay pending and are re-sent later.
        await self.uploader.close()
        await self.session.close()


async def start(context: DaemonContext) -> Started:
    """Start the uploader; its routes (flush, preview, …) come with the HTTP side."""
    part = UploadPart(context)
    uploader = part.uploader

    def add_routes(api_app: web.Application, tcp_app: web.Application) -> None:
        from agent_telemetryd.upload import routes

        api_app[routes.UPLOADER] = uploader
        api_app.add_routes(routes.routes)

    context.mode_listeners.append(part.on_mode_change)
    context.config_listeners.append(part.on_config_change)
    context.clear_guards.append(
        lambda: uploader.paused("the buffer is being cleared; no further request")
    )
    context.status_sections.append(part.status_section)
    if context.idle is not None:
        context.idle.checks.append(part.upload_due)
        uploader.on_finish.append(context.idle.activity)
    part.schedule.set_active(context.consent.uploads)
    if context.consent.uploads:
        # A wait the backend asked for before a restart still holds for the schedule.
        wait = await part.backend_wait()
        if wait is not None:
            part.schedule.defer(datetime.fromisoformat(wait.until))
    return Started(close=part.close, add_routes=add_routes, stopping=part.stopping)
