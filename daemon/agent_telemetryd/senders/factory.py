"""The sender the configuration names, sharing one aiohttp session — made when first needed.

A daemon that never sends (mode `local`, or sender `none`) never opens a client session
and never loads a sender's module: `DeferredSender` knows the sender's name and backend
from the configuration alone and builds the real one the first time it must act (a
flush, a preview, an erasure). `SharedSession` opens the session on the first request.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from agent_telemetryd.config import (
    HTTP_ENDPOINT_SETTING,
    POSTHOG_HOST_SETTING,
    Config,
    EndpointError,
    check_endpoint,
)
from agent_telemetryd.outbound import OutboundBatch
from agent_telemetryd.senders.base import (
    ErasureResult,
    PreparedRequest,
    RequestHook,
    Sender,
    SendResult,
)

if TYPE_CHECKING:
    import aiohttp


def new_session() -> aiohttp.ClientSession:
    import aiohttp

    # Connect fast or give up; a whole request (5 MiB gzip up) within a minute. No cookies
    # kept between requests; no environment proxies with credentials read silently
    # (trust_env off): the endpoint in the config is where data goes.
    return aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=60, connect=10, sock_read=30),
        cookie_jar=aiohttp.DummyCookieJar(),
        headers={"User-Agent": "agent-telemetry"},
    )


class SharedSession:
    """One client session for every sender a daemon part makes, opened on first use.

    It stands in for the `ClientSession` the senders hold: they only call `request()`
    (senders/transport.py), and the first call opens the real session, on the event loop
    where aiohttp wants it. So building a sender (for a preview, on the reader thread)
    opens nothing."""

    def __init__(self) -> None:
        self._session: aiohttp.ClientSession | None = None

    @property
    def opened(self) -> bool:
        return self._session is not None

    def get(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = new_session()
        return self._session

    def request(self, method: str, url: str, **kwargs: Any) -> Any:
        return self.get().request(method, url, **kwargs)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


def default_file_path(config: Config) -> Path:
    return config.paths.database.parent / "upload.ndjson"


def backend_of(config: Config) -> str:
    """Where events would go, without secrets: the sender's own `backend`, from the config."""
    if config.sender == "posthog":
        return f"posthog {check_endpoint(config.posthog_host, POSTHOG_HOST_SETTING).rstrip('/')}"
    if config.sender == "http" and config.http_endpoint:
        return f"http {check_endpoint(config.http_endpoint, HTTP_ENDPOINT_SETTING).rstrip('/')}"
    if config.sender == "file":
        return f"file {config.file_path or default_file_path(config)}"
    return config.sender


def build_sender(config: Config, session: aiohttp.ClientSession | SharedSession) -> Sender:
    """Raises EndpointError (a ValueError) for an endpoint that is not https or loopback.
    A `SharedSession` is opened by the sender's first request, not here."""
    if config.sender == "posthog":
        from agent_telemetryd.senders.posthog import PostHogSender

        assert config.posthog_api_key is not None  # load_config checked it
        return PostHogSender(
            _session(session),
            host=check_endpoint(config.posthog_host, POSTHOG_HOST_SETTING),
            api_key=config.posthog_api_key,
            personal_api_key=config.posthog_personal_api_key,
            project_id=config.posthog_project_id,
        )
    if config.sender == "http":
        from agent_telemetryd.senders.http import HttpSender

        assert config.http_endpoint is not None
        return HttpSender(
            _session(session),
            endpoint=check_endpoint(config.http_endpoint, HTTP_ENDPOINT_SETTING),
            api_key=config.http_api_key,
        )
    if config.sender == "file":
        from agent_telemetryd.senders.file import FileSender

        return FileSender(config.file_path or default_file_path(config))
    from agent_telemetryd.senders.none import NoneSender

    return NoneSender()


def eraser_for(
    backend: str, config: Config, session: aiohttp.ClientSession | SharedSession
) -> Sender | None:
    """A sender that can ask `backend` (as recorded when ids were sent there) to erase,
    from what the config still says of it; None when the config no longer reaches it.

    An http backend is asked when its endpoint is still the configured one (with the
    configured key); PostHog when its host is (erasing needs the personal key, which its
    sender asks for); a file is rewritten where it is. Nothing is guessed: a key is never
    sent to an endpoint other than the one it is configured with.
    """
    kind, _, where = backend.partition(" ")
    try:
        http_endpoint = check_endpoint(config.http_endpoint or "", HTTP_ENDPOINT_SETTING)
    except EndpointError:
        http_endpoint = None  # none, or one refused anyway: it is not that backend
    try:
        posthog_host = check_endpoint(config.posthog_host, POSTHOG_HOST_SETTING)
    except EndpointError:
        posthog_host = None
    if kind == "http" and where == http_endpoint:
        from agent_telemetryd.senders.http import HttpSender

        return HttpSender(_session(session), endpoint=where, api_key=config.http_api_key)
    if kind == "posthog" and where == posthog_host:
        from agent_telemetryd.senders.posthog import PostHogSender

        return PostHogSender(
            _session(session),
            host=where,
            api_key=config.posthog_api_key or "",  # erasing does not use it
            personal_api_key=config.posthog_personal_api_key,
            project_id=config.posthog_project_id,
        )
    if kind == "file" and where:
        from agent_telemetryd.senders.file import FileSender

        return FileSender(Path(where))
    return None


def _session(session: aiohttp.ClientSession | SharedSession) -> aiohttp.ClientSession:
    return cast("aiohttp.ClientSession", session)  # see SharedSession


class DeferredSender(Sender):
    """The configured sender, built the first time it must send, prepare or erase."""

    def __init__(self, config: Config, session: SharedSession) -> None:
        self.name = config.sender
        self.sends = config.sender != "none"
        self.backend = backend_of(config)
        self._config = config
        self._session = session
        self._sender: Sender | None = None

    @property
    def built(self) -> bool:
        return self._sender is not None

    def _real(self) -> Sender:
        if self._sender is None:
            self._sender = build_sender(self._config, self._session)
        return self._sender

    async def send(self, batch: OutboundBatch, on_request: RequestHook | None = None) -> SendResult:
        return await self._real().send(batch, on_request)

    def prepare(self, batch: OutboundBatch, sent_at: str) -> PreparedRequest:
        return self._real().prepare(batch, sent_at)

    async def erase(self, anonymous_ids: list[str]) -> ErasureResult:
        return await self._real().erase(anonymous_ids)

    async def health(self) -> SendResult:
        return await self._real().health()

    async def close(self) -> None:
        if self._sender is not None:
            await self._sender.close()
