"""The sender the configuration names, sharing one aiohttp session."""

from __future__ import annotations

from pathlib import Path

import aiohttp

from agent_telemetryd.config import (
    HTTP_ENDPOINT_SETTING,
    POSTHOG_HOST_SETTING,
    Config,
    check_endpoint,
)
from agent_telemetryd.senders.base import Sender
from agent_telemetryd.senders.file import FileSender
from agent_telemetryd.senders.http import HttpSender
from agent_telemetryd.senders.none import NoneSender
from agent_telemetryd.senders.posthog import PostHogSender

# Connect fast or give up; a whole request (5 MiB gzip up) within a minute.
REQUEST_TIMEOUT = aiohttp.ClientTimeout(total=60, connect=10, sock_read=30)


def new_session() -> aiohttp.ClientSession:
    # No cookies kept between requests; no environment proxies with credentials read
    # silently (trust_env off): the endpoint in the config is where data goes.
    return aiohttp.ClientSession(
        timeout=REQUEST_TIMEOUT,
        cookie_jar=aiohttp.DummyCookieJar(),
        headers={"User-Agent": "agent-telemetry"},
    )


def default_file_path(config: Config) -> Path:
    return config.paths.database.parent / "upload.ndjson"


def build_sender(config: Config, session: aiohttp.ClientSession) -> Sender:
    """Raises EndpointError (a ValueError) for an endpoint that is not https or loopback."""
    if config.sender == "posthog":
        assert config.posthog_api_key is not None  # load_config checked it
        return PostHogSender(
            session,
            host=check_endpoint(config.posthog_host, POSTHOG_HOST_SETTING),
            api_key=config.posthog_api_key,
            personal_api_key=config.posthog_personal_api_key,
            project_id=config.posthog_project_id,
        )
    if config.sender == "http":
        assert config.http_endpoint is not None
        return HttpSender(
            session,
            endpoint=check_endpoint(config.http_endpoint, HTTP_ENDPOINT_SETTING),
            api_key=config.http_api_key,
        )
    if config.sender == "file":
        return FileSender(config.file_path or default_file_path(config))
    return NoneSender()
