"""The daemon's life: startup, wait, shutdown — one path, like uvicorn's Server.

Shutdown drains in a fixed order: stop accepting, read what connected agents already
wrote, commit the buffer, stop the other parts, close SQLite, remove the sockets, and
release the lock last (in `finally`), so a restart never finds a half-stopped daemon.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import sqlite3
from collections.abc import Awaitable, Callable

import structlog
from aiohttp import web

from agent_telemetryd import __version__
from agent_telemetryd.config import Config
from agent_telemetryd.consent import decide, read_stored
from agent_telemetryd.context import CONTEXT, DaemonContext
from agent_telemetryd.events import Limits
from agent_telemetryd.ingest import Ingestor, Transform
from agent_telemetryd.listeners import ListenError, Listeners, open_listeners
from agent_telemetryd.lock import AlreadyRunningError, DaemonLock
from agent_telemetryd.mode_change import revoke_unless_uploading
from agent_telemetryd.paths import ensure_private_dir
from agent_telemetryd.privacy.allowlist import Allowlist
from agent_telemetryd.privacy.content import ContentMask
from agent_telemetryd.privacy.scrub import default_scrubber
from agent_telemetryd.ratelimit import UploadRateLimiter
from agent_telemetryd.receivers import api_routes, http_ingest, otlp_http, posthog_capture
from agent_telemetryd.receivers.debug_routes import routes as debug_routes
from agent_telemetryd.receivers.http_guard import loopback_guard, same_user_guard
from agent_telemetryd.receivers.ndjson_socket import serve_ndjson
from agent_telemetryd.service.notify import SdNotifier
from agent_telemetryd.store.migrations import MigrationError

log = structlog.get_logger("agent_telemetryd")

EXIT_OK = 0
EXIT_STARTUP_FAILURE = 3
DRAIN_SECONDS = 0.3

# A part of the daemon that starts after the core (the uploader, the dashboard): it gets
# the context and the two apps (api.sock, loopback TCP) to add routes to, and returns
# the coroutine function that stops it.
Closer = Callable[[], Awaitable[None]]
Part = Callable[[DaemonContext, web.Application, web.Application], Awaitable[Closer]]


def daemon_parts() -> tuple[Part, ...]:
    """The parts started after the core, in order; they stop in reverse order."""
    from agent_telemetryd import dashboard, ratelimit_state, reload, spool_intake
    from agent_telemetryd.receivers import otlp_listeners
    from agent_telemetryd.upload import part as upload_part

    return (
        ratelimit_state.attach,
        upload_part.attach,
        dashboard.attach,
        otlp_listeners.attach,
        reload.attach,
        spool_intake.attach,
    )


def privacy_transforms(config: Config) -> list[Transform]:
    """Allowlist first (dropping is cheapest), then content off unless kept, then scrubbing
    of what is kept."""
    transforms: list[Transform] = []
    if config.allow_events is not None or config.allow_properties is not None:
        transforms.append(Allowlist(config.allow_events, config.allow_properties))
    if not config.capture_content:
        transforms.append(ContentMask())
    transforms.append(default_scrubber(config.max_string_chars))
    return transforms


class Daemon:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.should_exit = asyncio.Event()
        self.context = DaemonContext(
            config=config, consent=decide(config, read_stored(config.paths.consent_file))
        )
        self._lock = DaemonLock(config.paths.lock_file)
        self._listeners: Listeners | None = None
        self._ndjson_server: asyncio.AbstractServer | None = None
        self._runners: list[web.AppRunner] = []
        self._closers: list[Callable[[], Awaitable[None]]] = []
        self._notifier = SdNotifier()

    async def serve(self) -> int:
        self._install_signal_handlers()
        try:
            try:
                await self.startup()
            except (
                AlreadyRunningError,
                ListenError,
                MigrationError,
                OSError,
                sqlite3.Error,
            ) as error:
                log.error("startup_failed", reason=str(error))
                return EXIT_STARTUP_FAILURE
            self._notifier.ready()
            watchdog = asyncio.create_task(self._notifier.watchdog_loop(self.should_exit))
            await self.should_exit.wait()
            self._notifier.stopping()
            await self.shutdown()
            watchdog.cancel()
            return EXIT_OK
        finally:
            await self._release()

    async def startup(self) -> None:
        paths = self.config.paths
        ensure_private_dir(paths.runtime_dir)
        self._lock.acquire()
        context = self.context
        if context.consent.keeps or paths.database.exists():
            await context.open_buffer()
            await revoke_unless_uploading(context)
        context.ingestor = Ingestor(
            limits=Limits(
                max_event_bytes=self.config.max_event_bytes,
                max_depth=self.config.max_depth,
                max_keys=self.config.max_keys,
            ),
            mode=lambda: context.consent.mode,
            writer=lambda: context.buffer.writer if context.buffer else None,
            anonymous_id=lambda: context.buffer.anonymous_id if context.buffer else "",
            transforms=privacy_transforms(self.config),
            upload_gate=UploadRateLimiter(self.config.rate_limit)
            if self.config.rate_limit
            else None,
        )
        context.dashboard_token = self._dashboard_token()
        self._listeners = open_listeners(self.config)
        context.http_url = self._listeners.http_url
        self._ndjson_server = await serve_ndjson(
            self._listeners.ingest, context.ingestor, self.config.max_line_bytes
        )
        api_app = self._make_app(same_user_guard())
        api_app.add_routes(api_routes.routes)
        api_app.add_routes(debug_routes)
        tcp_app = self._make_app(loopback_guard(self._allowed_origins))
        for part in daemon_parts():
            self._closers.append(await part(context, api_app, tcp_app))
        await self._start_app(api_app, self._listeners.api)
        if self._listeners.http is not None:
            await self._start_app(tcp_app, self._listeners.http)
        log.info(
            "daemon_started",
            version=__version__,
            mode=context.consent.mode,
            mode_source=context.consent.source,
            sender=self.config.sender,
            ingest_socket=str(paths.ingest_socket),
            http=context.http_url,
        )

    async def shutdown(self) -> None:
        log.info("daemon_stopping")
        # 1. Connections already queued on ingest.sock are accepted and what agents
        #    wrote is read before the listener closes: closing first would drop the
        #    backlog of not-yet-accepted connections, and their events with it.
        if self._ndjson_server is not None:
            await asyncio.sleep(DRAIN_SECONDS)
            self._ndjson_server.close()
            await asyncio.sleep(0.05)
        # 2. HTTP: finish requests under way (their events commit before they answer).
        for runner in self._runners:
            await runner.cleanup()
        self._runners.clear()
        if self._ndjson_server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._ndjson_server.wait_closed(), 1.0)
        # 3. The uploader and other parts: finish or safely abandon.
        for closer in reversed(self._closers):
            try:
                await closer()
            except Exception as error:
                log.error("part_shutdown_failed", reason=str(error))
        self._closers.clear()
        # 4. Commit what is queued and close SQLite.
        if self.context.buffer is not None:
            await self.context.buffer.close()
            self.context.buffer = None
        log.info("daemon_stopped")

    async def _release(self) -> None:
        if self._listeners is not None:
            self._listeners.close()
            self._listeners = None
        self._lock.release()
        self._notifier.close()

    def _make_app(self, guard: web.Middleware) -> web.Application:
        app = web.Application(middlewares=[guard], client_max_size=http_ingest.MAX_BODY_BYTES)
        app[CONTEXT] = self.context
        app.add_routes(http_ingest.routes)
        app.add_routes(posthog_capture.routes)
        otlp_http.add_to(app)
        return app

    async def _start_app(self, app: web.Application, sock: object) -> None:
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        await web.SockSite(runner, sock, shutdown_timeout=2.0).start()  # type: ignore[arg-type]
        self._runners.append(runner)

    def _allowed_origins(self) -> list[str]:
        url = self.context.http_url
        if not url:
            return []
        port = url.rsplit(":", 1)[1]
        return [url, f"http://localhost:{port}"]

    def _dashboard_token(self) -> str:
        path = self.config.paths.dashboard_token
        try:
            token = path.read_text().strip()
            if token:
                return token
        except OSError:
            pass
        if not self.context.consent.keeps:
            return secrets.token_urlsafe(32)  # off writes no files; a per-run token
        ensure_private_dir(path.parent)
        token = secrets.token_urlsafe(32)
        path.write_text(token + "\n")
        path.chmod(0o600)
        return token

    def _install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._handle_exit_signal, sig)

    def _handle_exit_signal(self, sig: signal.Signals) -> None:
        if self.should_exit.is_set():
            log.warning("second_signal_forcing_exit", signal=sig.name)
            raise SystemExit(1)
        self.should_exit.set()


def run_daemon(config: Config) -> int:
    # Every file the daemon makes (the buffer and its -wal/-shm, the token, consent) holds
    # the user's data or a secret: private from birth, not chmod-ed after.
    os.umask(0o077)
    return asyncio.run(Daemon(config).serve())
