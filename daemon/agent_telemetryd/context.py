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

from agent_telemetryd.config import Config
from agent_telemetryd.consent import ConsentState
from agent_telemetryd.idle import IdleTimer
from agent_telemetryd.ingest import Ingestor
from agent_telemetryd.receivers.otlp_state import OtlpState
from agent_telemetryd.store.buffer import Buffer

if TYPE_CHECKING:
    from agent_telemetryd.receivers.http_start import FirstHttp
    from agent_telemetryd.receivers.sites import Sites

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

    async def open_buffer(self) -> Buffer:
        """Open the buffer the config names and hold it here."""
        config = self.config
        self.buffer = await Buffer.open(
            config.paths.database,
            max_events=config.max_events,
            max_bytes=config.max_bytes,
            retention_days=config.retention_days,
        )
        return self.buffer
