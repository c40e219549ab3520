"""The daemon's life: startup, wait, shutdown — one path, like uvicorn's Server.

Everything startup opens is pushed on one `AsyncExitStack` as it opens (aiohttp's cleanup
contexts in one object), so shutdown is a single `aclose()` that undoes it in reverse, and
a startup that fails half-way closes exactly what it had opened. Pushed in this order, so
closed in the opposite one:

    lock · buffer lock · notifier · buffer · listening sockets · parts (uploader, dashboard)
    · the HTTP side's start · api.sock · TCP · ingest.sock · "stop accepting everywhere"

A shutdown therefore stops every listener from accepting at once, lets requests under way
finish and reads what connected agents wrote (all within one deadline), stops the parts,
removes the sockets, commits and closes the buffer, and releases the locks last, so a
restart never finds a half-stopped daemon.

The HTTP listeners accept from the start, but aiohttp and the apps behind them are built
only when a first connection to one of them arrives (receivers/http_start.py): a daemon
whose agents only write to ingest.sock never loads it.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import importlib
import os
import secrets
import signal
import sqlite3
import tempfile
import traceback
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent_telemetry._paths import open_regular
from agent_telemetryd import __version__
from agent_telemetryd.analytics.vocabulary import Vocabulary
from agent_telemetryd.config import Config
from agent_telemetryd.consent import UNREADABLE_SOURCE, decide, read_stored
from agent_telemetryd.context import DaemonContext
from agent_telemetryd.events import Limits
from agent_telemetryd.idle import Busy, IdleTimer, idle_exit_seconds
from agent_telemetryd.ingest import Ingestor, Transform
from agent_telemetryd.lazy_log import get_logger
from agent_telemetryd.listeners import ListenError, Listeners, open_listeners
from agent_telemetryd.lock import AlreadyRunningError, DaemonLock
from agent_telemetryd.mode_change import revoke_unless_uploading
from agent_telemetryd.parts import Closer
from agent_telemetryd.paths import ensure_private_dir, others_can_replace
from agent_telemetryd.privacy.allowlist import Allowlist
from agent_telemetryd.privacy.content import ContentMask
from agent_telemetryd.privacy.scrub import default_scrubber
from agent_telemetryd.ratelimit import UploadRateLimiter
from agent_telemetryd.receivers.connections import Drain
from agent_telemetryd.receivers.http_connection import HttpSite
from agent_telemetryd.receivers.http_start import FirstHttp, HttpStart
from agent_telemetryd.receivers.sites import Site, Sites, plan_sites
from agent_telemetryd.service.notify import SdNotifier
from agent_telemetryd.store.migrations import MigrationError
from agent_telemetryd.terminal import HeldHangup, terminal_stdio

log = get_logger("agent_telemetryd")

EXIT_OK = 0
EXIT_FORCED = 1  # a second Ctrl-C cut the drain short
EXIT_STARTUP_FAILURE = 3  # the unit's RestartPreventExitStatus: no restart loop
# One deadline for the whole drain (a few seconds): requests under way finish
# and connected agents are read to the end within it; what is left then is cut.
DRAIN_SECONDS = 5.0

if TYPE_CHECKING:
    from aiohttp import web

    from agent_telemetryd.parts import AddRoutes, Part


def daemon_parts() -> tuple[Part, ...]:
    """The parts started after the core, in order; they stop in reverse order."""
    from agent_telemetryd import dashboard, ratelimit_state, reload, spool_intake
    from agent_telemetryd.receivers import otlp_listeners
    from agent_telemetryd.upload import part as upload_part

    return (
        ratelimit_state.start,
        upload_part.start,
        dashboard.start,
        otlp_listeners.start,
        reload.start,
        spool_intake.start,
    )


def privacy_transforms(config: Config) -> list[Transform]:
    """Allowlist first (dropping is cheapest), then one vocabulary for agent data, then
    content off unless kept, then scrubbing of what is kept."""
    transforms: list[Transform] = []
    if config.allow_events is not None or config.allow_properties is not None:
        transforms.append(Allowlist(config.allow_events, config.allow_properties))
    transforms.append(Vocabulary())
    if not config.capture_content:
        transforms.append(ContentMask())
    transforms.append(default_scrubber(config.max_string_chars))
    return transforms


def startup_failure_reason(error: Exception) -> dict[str, str]:
    """The one log line of a failed start: the reason, and for the unforeseen its place."""
    if isinstance(error, AlreadyRunningError | ListenError | MigrationError):
        return {"reason": str(error)}
    if isinstance(error, OSError) and error.strerror:
        where = error.filename or ""
        return {"reason": f"{error.strerror}: {where}" if where else error.strerror}
    if isinstance(error, sqlite3.Error):
        return {"reason": f"SQLite: {error}"}
    frames = traceback.extract_tb(error.__traceback__)
    fields = {"reason": f"{type(error).__name__}: {error}"}
    if frames:
        fields["where"] = f"{Path(frames[-1].filename).name}:{frames[-1].lineno}"
    return fields


def _replace_privately(path: Path, text: str) -> None:
    """Put `text` at `path` under a new name first (mkstemp makes it 0600), then rename it
    over whatever is there: written in place, a named pipe at `path` would never open."""
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}-")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


class Daemon:
    def __init__(self, config: Config, held_hangup: HeldHangup | None = None) -> None:
        self.config = config
        self.should_exit = asyncio.Event()
        self.context = DaemonContext(
            config=config, consent=decide(config, read_stored(config.paths.consent_file))
        )
        # The terminal as it was when SIGHUP was first held, the process's first moment.
        self.context.held_hangup = held_hangup
        self.context.terminal = held_hangup.terminal if held_hangup else terminal_stdio()
        self.context.request_stop = lambda: self._on_exit_signal(signal.SIGHUP)
        self._lock = DaemonLock(config.paths.lock_file)
        self._http_unavailable: str | None = None
        self._buffer_lock = self.context.buffer_lock = DaemonLock(config.paths.buffer_lock)
        self._notifier = SdNotifier()
        self._drain = Drain()
        self._sites: Sites | None = None
        self._stopping: list[Closer] = []  # the parts' first steps of a shutdown

    async def serve(self) -> int:
        with self._exit_signals():
            stack = contextlib.AsyncExitStack()
            try:
                await self.startup(stack)
            except Exception as error:
                # Whatever it was: one line, exit 3, and what was opened is closed again.
                log.error("startup_failed", **startup_failure_reason(error))
                self._drain.begin(0)
                await stack.aclose()
                return EXIT_STARTUP_FAILURE
            except BaseException:
                self._drain.begin(0)
                await stack.aclose()
                raise
            try:
                await self.main_loop(stack)
            finally:
                self._drain.begin(DRAIN_SECONDS)
                await stack.aclose()
            log.info("daemon_stopped", forced=self._drain.forced)
            return EXIT_FORCED if self._drain.forced else EXIT_OK

    async def startup(self, stack: contextlib.AsyncExitStack) -> None:
        config, context = self.config, self.context
        paths = config.paths
        unsafe = others_can_replace(paths.data_dir)
        if unsafe is not None:
            raise PermissionError(
                errno.EPERM,
                f"another user could replace the buffer in {paths.data_dir}: {unsafe}",
            )
        ensure_private_dir(paths.runtime_dir)
        self._lock.acquire()
        stack.callback(self._lock.release)  # pushed first: released last of all
        # Taken when the buffer is first opened (DaemonContext.open_buffer); released after
        # the buffer is closed, and a no-op if it never was taken.
        stack.callback(self._buffer_lock.release)
        stack.callback(self._notifier.close)
        stack.push_async_callback(self._closing("buffer", self._close_buffer))
        stack.callback(context.otlp.close)  # its decoding thread: idle once listeners drained
        if context.consent.keeps or paths.database.exists():
            await context.open_buffer()
            await revoke_unless_uploading(context)
        context.ingestor = ingestor = self._make_ingestor()
        context.dashboard_token = self._dashboard_token()
        listeners = open_listeners(config)
        stack.callback(listeners.close)  # sockets closed, socket files removed
        context.http_url = listeners.http_url
        self._http_unavailable = listeners.http_unavailable
        self._make_idle_timer(stack, listeners)
        self._sites = sites = plan_sites(config, listeners, ingestor)
        context.sites = sites  # a part may add a TCP listener (OTLP's port)
        stack.callback(sites.close)
        part_routes: list[AddRoutes] = []
        for part in daemon_parts():
            started = await part(context)
            stack.push_async_callback(self._closing(part.__module__, started.close))
            if started.add_routes is not None:
                part_routes.append(started.add_routes)
            if started.stopping is not None:
                self._stopping.append(self._closing(part.__module__, started.stopping))
        http_start = HttpStart(sites.http, lambda: self._build_http(part_routes), self._first_http)
        stack.push_async_callback(http_start.close)  # after the listeners' drain
        for site in sites.http:
            await self._start_site(stack, site)
        await self._start_site(stack, sites.ingest)
        # Pushed last, so the first thing a shutdown does: no listener takes anything new.
        stack.push_async_callback(self._stop_accepting)
        context.status_sections.append(self._status_section)
        if context.idle is not None:
            for site in sites.started:
                site.connections.on_empty = context.idle.activity
            context.idle.activity()  # the first quiet period starts now

    async def main_loop(self, stack: contextlib.AsyncExitStack) -> None:
        context = self.context
        self._notifier.ready()
        log.info(
            "daemon_started",
            version=__version__,
            mode=context.consent.mode,
            mode_source=context.consent.source,
            sender=self.config.sender,
            ingest_socket=str(self.config.paths.ingest_socket),
            http=context.http_url,
            idle_exit_seconds=context.idle.seconds if context.idle is not None else None,
        )
        if context.consent.source == UNREADABLE_SOURCE:
            log.warning("consent_unreadable", reason=context.consent.reason)
        watchdog = asyncio.create_task(self._notifier.watchdog_loop(self.should_exit))
        stack.push_async_callback(_cancel, watchdog)
        # Nothing ticks while idle: a signal sets it, or the idle timer (one timer, started
        # again by activity) after a quiet period under socket activation.
        await self.should_exit.wait()
        if context.idle is not None:
            context.idle.close()  # connections ending in the drain are not activity
        self._notifier.stopping()
        log.info("daemon_stopping", drain_seconds=DRAIN_SECONDS)

    # --- startup pieces ----------------------------------------------------------------

    def _make_idle_timer(self, stack: contextlib.AsyncExitStack, listeners: Listeners) -> None:
        """A quiet daemon ends itself as SIGTERM would end it (idle.py says when)."""
        seconds = idle_exit_seconds(
            self.config,
            socket_activated=listeners.socket_activated,
            binds_http_port=listeners.http_bound_here,
        )
        if seconds is None:
            return
        timer = IdleTimer(seconds, self.should_exit.set)
        timer.checks.append(self._busy_receiving)
        self.context.idle = timer
        stack.callback(timer.close)

    async def _busy_receiving(self, quiet_until: float) -> Busy | None:
        for site in self._sites.started if self._sites is not None else ():
            if site.connections.open:
                # Its last connection's end starts the quiet period again.
                return Busy(f"a connection to the {site.connections.listener} listener is open")
        ingestor = self.context.ingestor
        if ingestor is not None and ingestor.queued_events():
            return Busy("events are waiting to be committed", retry=1.0)
        return None

    def _make_ingestor(self) -> Ingestor:
        config, context = self.config, self.context
        return Ingestor(
            limits=Limits(
                max_event_bytes=config.max_event_bytes,
                max_depth=config.max_depth,
                max_keys=config.max_keys,
            ),
            mode=lambda: context.consent.mode,
            writer=lambda: context.buffer.writer if context.buffer else None,
            anonymous_id=lambda: context.buffer.anonymous_id if context.buffer else "",
            transforms=privacy_transforms(config),
            upload_gate=UploadRateLimiter(config.rate_limit) if config.rate_limit else None,
        )

    async def _start_site(self, stack: contextlib.AsyncExitStack, site: Site) -> None:
        await site.start()
        assert self._sites is not None
        self._sites.started.append(site)
        name = f"{site.connections.listener} listener"
        stack.push_async_callback(self._closing(name, lambda: site.drain(self._drain)))

    async def _build_http(
        self, part_routes: Sequence[AddRoutes]
    ) -> list[tuple[HttpSite, web.Application]]:
        """Import aiohttp and build every HTTP listener's app (the first connection asks).

        Imported on a thread: aiohttp takes ~0.2 s to import, during which the loop keeps
        taking events on ingest.sock and reading the connections that wait for it."""
        http_apps = await asyncio.to_thread(importlib.import_module, "agent_telemetryd.http_apps")
        assert self._sites is not None
        return http_apps.build_apps(self.context, self._sites, part_routes)

    def _first_http(self, first: FirstHttp) -> None:
        self.context.first_http = first

    def _dashboard_token(self) -> str:
        path = self.config.paths.dashboard_token
        try:
            # A named pipe in its place would hold the start in open() for good.
            with open_regular(path, "r") as handle:
                token = handle.read().strip()
            if token:
                return token
        except OSError:
            pass
        if not self.context.consent.keeps:
            return secrets.token_urlsafe(32)  # off writes no files; a per-run token
        ensure_private_dir(path.parent)
        token = secrets.token_urlsafe(32)
        _replace_privately(path, token + "\n")
        return token

    async def _status_section(self) -> dict[str, Any]:
        section = self._sites.status() if self._sites is not None else {}
        idle = self.context.idle
        return {
            **section,
            "idle_exit_seconds": idle.seconds if idle is not None else None,
            "http_unavailable": self._http_unavailable,
        }

    # --- shutdown pieces ---------------------------------------------------------------

    async def _stop_accepting(self) -> None:
        for site in self._sites.started if self._sites is not None else ():
            await site.stop_accepting(self._drain)
        # Then end what requests under way wait for, so they are answered in the drain.
        for stopping in self._stopping:
            await stopping()

    async def _close_buffer(self) -> None:
        # Whatever buffer is open by now (enabling at runtime opens one): the writer
        # commits what is queued, then SQLite closes.
        buffer, self.context.buffer = self.context.buffer, None
        if buffer is not None:
            await buffer.close()

    def _closing(self, name: str, close: Closer) -> Closer:
        """A step of the shutdown that logs its failure and lets the next steps run."""

        async def step() -> None:
            try:
                await close()
            except Exception as error:
                log.error("shutdown_step_failed", step=name, reason=str(error))

        return step

    # --- signals -------------------------------------------------------------------------

    @contextlib.contextmanager
    def _exit_signals(self) -> Iterator[None]:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._on_exit_signal, sig)
        try:
            yield
        finally:
            # Back to the defaults once the daemon is down: a signal must then stop the
            # process again, not set an event that nothing waits for any more.
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)

    def _on_exit_signal(self, sig: signal.Signals) -> None:
        """The first SIGTERM or SIGINT starts the drain. A second SIGTERM changes nothing
        (supervisors and shells may send it twice); a second SIGINT, an impatient Ctrl-C,
        cuts the drain short. Committed events are safe either way: SQLite has them."""
        if not self.should_exit.is_set():
            self.should_exit.set()
        elif sig == signal.SIGINT and not self._drain.forced:
            log.warning("second_interrupt_cuts_drain_short")
            self._drain.force()
        else:
            log.info("already_stopping", signal=sig.name)


async def _cancel(task: asyncio.Task[Any]) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


def run_daemon(config: Config, held_hangup: HeldHangup | None = None) -> int:
    # Every file the daemon makes (the buffer and its -wal/-shm, the token, consent) holds
    # the user's data or a secret: private from birth, not chmod-ed after.
    os.umask(0o077)
    try:
        return asyncio.run(Daemon(config, held_hangup).serve())
    finally:
        # Closing the loop put SIGHUP back to its default: one now would end the process
        # by a signal in the last steps of a clean exit, and the exit code would be lost.
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
