"""The uploader as a part of the daemon: sender, schedule, routes, status, mode listener."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from agent_telemetryd.config import Config
from agent_telemetryd.consent import ConsentState
from agent_telemetryd.context import DaemonContext
from agent_telemetryd.reload_plan import SENDER_SETTINGS
from agent_telemetryd.senders.factory import build_sender, new_session
from agent_telemetryd.upload import routes
from agent_telemetryd.upload.backoff import Backoff
from agent_telemetryd.upload.flush import UploadSettings
from agent_telemetryd.upload.scheduler import UploadSchedule
from agent_telemetryd.upload.uploader import Uploader


def settings_from(config: Config) -> UploadSettings:
    base = config.upload_retry_base
    return UploadSettings(
        batch_size=config.batch_size,
        backoff=Backoff(base=base, cap=max(base, 60.0)),
        rate_limit=config.rate_limit,
        rate_limit_backlog=config.rate_limit_backlog,
    )


async def attach(context: DaemonContext, api_app: web.Application, tcp_app: web.Application):
    """Start the uploader; returns the coroutine function that stops it."""
    session = new_session()
    sender = build_sender(context.config, session)
    uploader = Uploader(
        sender,
        settings_from(context.config),
        consent=lambda: context.consent,
        buffer=lambda: context.buffer,
    )
    schedule = UploadSchedule(uploader, context.config.upload_interval)
    api_app[routes.UPLOADER] = uploader
    api_app.add_routes(routes.routes)

    async def on_config_change(before: Config, after: Config) -> None:
        # A reload: the next flush uses the new sender and settings; this one finishes.
        if any(getattr(before, name) != getattr(after, name) for name in SENDER_SETTINGS):
            uploader.reconfigure(build_sender(after, session), settings_from(after))
        elif settings_from(before) != settings_from(after):
            uploader.reconfigure(uploader.sender, settings_from(after))
        if before.upload_interval != after.upload_interval:
            schedule.set_interval(after.upload_interval, active=context.consent.uploads)

    async def on_mode_change(before: ConsentState, after: ConsentState) -> None:
        schedule.set_active(after.uploads)
        if not after.uploads:
            await uploader.stop("upload was turned off during the flush; no further request")

    async def status_section() -> dict[str, Any]:
        # last_upload and rate_limited_by_source come from the buffer file (status.py),
        # so `status` shows them with the daemon down too; these are the live parts.
        next_run = schedule.next_run()
        last = uploader.last_report
        return {
            "next_upload": (
                next_run.astimezone().isoformat(timespec="seconds") if next_run else None
            ),
            "upload": {
                "backend": uploader.sender.backend,
                "interval_seconds": schedule.interval,
                "batch_size": uploader.settings.batch_size,
                "flush_running": uploader.running,
                "last_flush": last.as_dict() if last is not None else None,
            },
        }

    context.mode_listeners.append(on_mode_change)
    context.config_listeners.append(on_config_change)
    context.clear_guards.append(
        lambda: uploader.paused("the buffer is being cleared; no further request")
    )
    context.status_sections.append(status_section)
    schedule.start(active=context.consent.uploads)

    async def close() -> None:
        schedule.shutdown()
        # Abandoning a request is safe: its events stay pending and are re-sent later.
        await uploader.close()
        await session.close()

    return close
