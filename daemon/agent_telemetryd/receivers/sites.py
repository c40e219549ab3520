"""The three listeners as the daemon serves them: budgets, timeouts and who may connect.

api.sock and ingest.sock only take the daemon's own user (SO_PEERCRED). The loopback TCP
port takes the Host/Origin guard, and then whichever check of the peer this machine
allows: its owner uid from the kernel's socket table (Linux), the per-install token when
`http_require_token` is set, or both.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import structlog
from aiohttp import web

from agent_telemetryd.config import Config
from agent_telemetryd.fdlimit import FileLimit, fit_budgets, raise_file_limit
from agent_telemetryd.ingest import Ingestor
from agent_telemetryd.listeners import Listeners
from agent_telemetryd.receivers import tcp_peer
from agent_telemetryd.receivers.connections import ACCEPT_BURST, ConnectionLimits
from agent_telemetryd.receivers.http_connection import HttpSite
from agent_telemetryd.receivers.http_guard import (
    loopback_guard,
    same_user_guard,
    tcp_peer_guard,
)
from agent_telemetryd.receivers.ndjson_socket import NdjsonSite

log = structlog.get_logger("agent_telemetryd.connections")

Site = HttpSite | NdjsonSite


class PeerLookup:
    """The owner uid of each TCP connection, looked up once per connection.

    Reading the socket table costs time in proportion to every TCP socket on the machine
    (about 25 ms with 4,000 of them), so it runs on a thread of its own, never on the
    event loop, and only when a connection sends a request.
    """

    def __init__(self, site: HttpSite) -> None:
        self._site = site
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="tcp-peer")

    async def uid_of(self, request: web.Request) -> int | None:
        connection = self._site.connection_of(request)
        transport = request.transport
        if connection is None or transport is None:
            return None
        if not connection.peer_known:
            sock = transport.get_extra_info("socket")
            loop = asyncio.get_running_loop()
            connection.peer_uid = await loop.run_in_executor(
                self._executor, tcp_peer.peer_uid, sock
            )
            connection.peer_known = True
        return connection.peer_uid

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


@dataclass
class Sites:
    api: HttpSite
    tcp: HttpSite | None
    ingest: NdjsonSite
    file_limit: FileLimit
    tcp_peer_check: str | None  # None without a TCP listener
    peer_lookup: PeerLookup | None = None
    started: list[Site] = field(default_factory=list)

    def __iter__(self) -> Iterator[Site]:
        yield self.api
        if self.tcp is not None:
            yield self.tcp
        yield self.ingest

    def api_middlewares(self) -> list[web.Middleware]:
        return [self.api.middleware, same_user_guard()]

    def tcp_middlewares(
        self, allowed_origins: Callable[[], Iterable[str]], token: Callable[[], str]
    ) -> list[web.Middleware]:
        guards = [loopback_guard(allowed_origins)]
        if self.tcp is None:
            return guards
        uid_of = self.peer_lookup.uid_of if self.peer_lookup is not None else None
        token_required = self.tcp_peer_check in ("token", "uid+token")
        return [
            self.tcp.middleware,
            *guards,
            tcp_peer_guard(uid_of=uid_of, token=token if token_required else None),
        ]

    def status(self) -> dict[str, Any]:
        return {
            "connections": {site.connections.listener: site.stats() for site in self.started},
            "file_limit": self.file_limit.as_dict(),
            "tcp_peer_check": self.tcp_peer_check,
        }

    def close(self) -> None:
        if self.peer_lookup is not None:
            self.peer_lookup.close()


def plan_sites(config: Config, listeners: Listeners, ingestor: Ingestor) -> Sites:
    """Raise the file limit, fit the budgets under it, and say how TCP peers are checked."""
    file_limit = raise_file_limit()
    budgets = _fit_budgets(config, file_limit)

    def limits(listener: str) -> ConnectionLimits:
        return ConnectionLimits(
            max_connections=budgets[listener],
            idle_timeout=config.idle_timeout,
            header_timeout=config.header_timeout,
            body_timeout=config.body_timeout,
        )

    paths = config.paths
    api = HttpSite(
        "api",
        listeners.api,
        owned_path=paths.api_socket if listeners.owns(paths.api_socket) else None,
        limits=limits("api"),
    )
    ingest = NdjsonSite(
        listeners.ingest,
        owned_path=paths.ingest_socket if listeners.owns(paths.ingest_socket) else None,
        ingestor=ingestor,
        max_line_bytes=config.max_line_bytes,
        max_connections=budgets["ingest"],
        idle_timeout=config.ingest_idle_timeout,
    )
    if listeners.http is None:
        return Sites(api, None, ingest, file_limit, tcp_peer_check=None)
    tcp = HttpSite("tcp", listeners.http, owned_path=None, limits=limits("tcp"))
    uid_check = tcp_peer.table_readable(listeners.http)
    check = tcp_peer.protection(uid_check, config.http_require_token)
    if check == "off":
        log.warning(
            "tcp_peer_check_off",
            reason="the kernel's socket table cannot be read here, so other local users"
            " can post to the loopback port; set http_require_token = true to require"
            " the per-install token there",
        )
    lookup = PeerLookup(tcp) if uid_check else None
    return Sites(api, tcp, ingest, file_limit, tcp_peer_check=check, peer_lookup=lookup)


def _fit_budgets(config: Config, file_limit: FileLimit) -> dict[str, int]:
    wanted = dict.fromkeys(("api", "ingest"), config.max_connections)
    if config.http_port is not None:
        wanted["tcp"] = config.max_connections
    budgets = fit_budgets(wanted, file_limit.soft, ACCEPT_BURST)
    if budgets != wanted:
        log.warning(
            "connection_caps_lowered",
            reason="limits.max_connections on every listener would not fit the file limit",
            file_limit=file_limit.soft,
            caps=budgets,
        )
    budgets.setdefault("tcp", config.max_connections)
    return budgets
