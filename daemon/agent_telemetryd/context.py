"""What the daemon's parts share while it runs.

Nothing here needs aiohttp: the HTTP side is built only when a first HTTP connection
arrives (receivers/http_start.py), and its handlers reach this through one typed AppKey
(web_context.py).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from agent_telemetry._paths import make_private_dirs
from agent_telemetryd.config import Config
from agent_telemetryd.consent import ConsentState
from agent_telemetryd.idle import IdleTimer
from agent_telemetryd.ingest import Ingestor
from agent_telemetryd.lock import DaemonLock
from agent_telemetryd.receivers.otlp_state import OtlpState
from agent_telemetryd.store.buffer import Buffer
from agent_telemetryd.store.database import open_error

if TYPE_CHECKING:
    from agent_telemetryd.receivers.http_start import FirstHttp
    from agent_telemetryd.receivers.sites import Sites
    from agent_telemetryd.terminal import HeldHangup

# A part of the daemon (the uploader, say) adds its own section to `status`.
StatusSection = Callable[[], Awaitable[dict[str, Any]]]
# Called after the effective mode changed: (before, after).
ModeListener = Callable[[ConsentState, ConsentState], Awaitable[None]]
# Called after a reload applied a new config: (before, after).
ConfigListener = Callable[[Config, Config], Awaitable[None]]
# Held while the buffer is emptied: whatever was read from it must not leave meanwhile.
ClearGuard = Callable[[], AbstractAsyncContextManager[None]]


@dataclass
class DaemonContext:
    config: Config
    consent: ConsentState
    ingestor: Ingestor | None = None
    buffer: Buffer | None = None
    # Taken before the buffer is first opened (at start, or when a mode that keeps events
    # is turned on later): mode off with no buffer yet makes no file at all.
    buffer_lock: DaemonLock | None = None
    http_url: str | None = None
    sites: Sites | None = None  # the listeners; a part may add one (OTLP's port)
    dashboard_token: str = ""
    idle: IdleTimer | None = None  # set when a quiet daemon exits by itself
    otlp: OtlpState = field(default_factory=OtlpState)  # shared by every OTLP receiver
    first_http: FirstHttp | None = None  # what the daemon held when HTTP was first asked
    status_sections: list[StatusSection] = field(default_factory=list)
    mode_listeners: list[ModeListener] = field(default_factory=list)
    config_listeners: list[ConfigListener] = field(default_factory=list)
    clear_guards: list[ClearGuard] = field(default_factory=list)
    # The standard descriptors that were a terminal at start (terminal.py), and how a
    # part asks the daemon to stop as SIGTERM would (a SIGHUP that is a terminal's hangup).
    terminal: tuple[int, ...] = ()
    request_stop: Callable[[], None] = lambda: None
    # SIGHUP as held from the process's first moment until reload.py takes it over.
    held_hangup: HeldHangup | None = None

    async def open_buffer(self) -> Buffer:
        """Open the buffer the config names and hold it here."""
        config = self.config
        if self.buffer_lock is not None:
            # Before the file is touched: opening it may heal it or move a file aside,
            # which only the buffer's one writer may do.
            try:
                make_private_dirs(config.paths.data_dir)
                self.buffer_lock.acquire()
            except OSError as error:  # a folder that refuses files refuses the buffer too
                raise open_error(config.paths.database, error) from error
        self.buffer = await Buffer.open(
            config.paths.database,
            max_events=config.max_events,
            max_bytes=config.max_bytes,
            retention_days=config.retention_days,
        )
        return self.buffer
