"""The three listeners as the daemon serves them: budgets, timeouts and who may connect.

api.sock and ingest.sock only take the daemon's own user (SO_PEERCRED). The loopback TCP
port takes the Host/Origin guard, and then whichever check of the peer this machine
allows: its owner uid from the kernel's socket table (Linux), the per-install token when
`http_require_token` is set, or both. So do the optional OTLP ports (OTLP/HTTP's own and
gRPC), each with a connection budget of its own, fitted under the file limit with the rest.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from agent_telemetryd.config import Config
from agent_telemetryd.fdlimit import FileLimit, fit_budgets, raise_file_limit
from agent_telemetryd.ingest import Ingestor
from agent_telemetryd.lazy_log import get_logger
from agent_telemetryd.listeners import Listeners
from agent_telemetryd.receivers import tcp_peer
from agent_telemetryd.receivers.connections import ACCEPT_BURST, ConnectionLimits
from agent_telemetryd.receivers.http_connection import HttpSite
from agent_telemetryd.receivers.ndjson_socket import NdjsonSite

if TYPE_CHECKING:
    from aiohttp import web

    UidOfRequest = Callable[[web.Request], Awaitable[int | None]]
    # Makes the app of a listener a part added (OTLP's port), when the HTTP side is built.
    AppFactory = Callable[[], web.Application]

log = get_logger("agent_telemetryd.connections")

Site = HttpSite | NdjsonSite
UidOfAddress = Callable[[tuple[str, int]], Awaitable[int | None]]


class PeerLookup:
    """The owner uid of TCP connections, on one thread for every TCP listener.

    Asking the kernel for one socket takes microseconds, but where that is refused the
    socket table is read, which costs time in proportion to every TCP socket on the
    machine (about 25 ms with 4,000 of them): so it runs on a thread of its own, never on
    the event loop, and only when a connection sends a request.
    """

    def __init__(self) -> None:
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="tcp-peer")

    def of_requests(self, site: HttpSite) -> UidOfRequest:
        """For an HTTP listener: looked up once per connection."""

        async def uid_of(request: web.Request) -> int | None:
            connection = site.connection_of(request)
            transport = request.transport
            if connection is None or transport is None:
                return None
            if not connection.peer_known:
                sock = transport.get_extra_info("socket")
                connection.peer_uid = await self._run(tcp_peer.peer_uid, sock)
                connection.peer_known = True
            return connection.peer_uid

        return uid_of

    def of_addresses(self, family: int, listening: tuple[str, int]) -> UidOfAddress:
        """For gRPC, which shows a call's peer address and not its socket: once per call."""

        async def uid_of(peer: tuple[str, int]) -> int | None:
            return await self._run(tcp_peer.owner_uid, family, peer, listening)

        return uid_of

    async def _run(self, lookup: Callable[..., int | None], *args: object) -> int | None:
        return await asyncio.get_running_loop().run_in_executor(self._executor, lookup, *args)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


@dataclass
class Sites:
    api: HttpSite
    tcp: HttpSite | None
    ingest: NdjsonSite
    file_limit: FileLimit
    limits: dict[str, ConnectionLimits]  # by listener: api, ingest, tcp, otlp_http, otlp_grpc
    token_required: bool
    tcp_peer_check: str | None = None  # None without a TCP listener
    started: list[Site] = field(default_factory=list)
    # TCP listeners a part of the daemon opened (OTLP's port), with what makes their apps:
    # the daemon starts, counts and drains them with its own.
    added: list[tuple[HttpSite, AppFactory]] = field(default_factory=list)
    _peer_lookup: PeerLookup | None = field(default=None, init=False)
    _uid_of: dict[str, UidOfRequest] = field(default_factory=dict, init=False)

    @property
    def http(self) -> list[HttpSite]:
        """Every HTTP listener: api.sock, the TCP port, and those the parts added."""
        main = [self.api] if self.tcp is None else [self.api, self.tcp]
        return main + [site for site, _ in self.added]

    # The middlewares are asked for when the HTTP side is built, with aiohttp loaded.

    def api_middlewares(self) -> list[web.Middleware]:
        from agent_telemetryd.receivers.http_guard import deadline_guard, same_user_guard
        from agent_telemetryd.receivers.http_serving import track_connection

        return [track_connection(self.api), same_user_guard(), deadline_guard()]

    def tcp_middlewares(
        self,
        allowed_origins: Callable[[], Iterable[str]],
        token: Callable[[], str],
        site: HttpSite | None = None,
    ) -> list[web.Middleware]:
        """The guards of a loopback TCP listener: the main port's, or `site`'s."""
        from agent_telemetryd.receivers.http_guard import loopback_guard, tcp_peer_guard
        from agent_telemetryd.receivers.http_serving import track_connection
        from agent_telemetryd.receivers.posthog_capture import CAPTURE_PATHS

        site = site if site is not None else self.tcp
        guards = [loopback_guard(allowed_origins)]
        if site is None:
            return guards
        return [
            track_connection(site),
            *guards,
            tcp_peer_guard(
                uid_of=self._uid_of.get(site.listener),
                token=token if self.token_required else None,
                body_token_paths=CAPTURE_PATHS,
            ),
        ]

    def add_tcp_site(self, listener: str, sock: socket.socket) -> HttpSite:
        """Another loopback HTTP listener (OTLP's port 4318): its own budget and timeouts,
        the main port's checks of the peer (`tcp_middlewares(..., site)`)."""
        site = HttpSite(listener, sock, owned_path=None, limits=self.limits[listener])
        uid_check = tcp_peer.table_readable(sock)
        if uid_check:
            self._uid_of[listener] = self._lookup().of_requests(site)
        self._note_protection(uid_check)
        return site

    def uid_of_addresses(self, family: int, listening: tuple[str, int]) -> UidOfAddress | None:
        """The owner uid of a gRPC call's peer, where the socket table lists the listener."""
        uid_check = tcp_peer.table_lists(family, listening)
        self._note_protection(uid_check)
        return self._lookup().of_addresses(family, listening) if uid_check else None

    def status(self) -> dict[str, Any]:
        return {
            "connections": {site.connections.listener: site.stats() for site in self.started},
            "file_limit": self.file_limit.as_dict(),
            "tcp_peer_check": self.tcp_peer_check,
        }

    def close(self) -> None:
        if self._peer_lookup is not None:
            self._peer_lookup.close()

    def _lookup(self) -> PeerLookup:
        if self._peer_lookup is None:
            self._peer_lookup = PeerLookup()
        return self._peer_lookup

    def _note_protection(self, uid_check: bool) -> None:
        """What `status` reports, from the first TCP listener (they share a host)."""
        if self.tcp_peer_check is not None:
            return
        self.tcp_peer_check = tcp_peer.protection(uid_check, self.token_required)
        if self.tcp_peer_check == "off":
            log.warning(
                "tcp_peer_check_off",
                reason="the kernel's socket table cannot be read here, so other local users"
                " can post to the loopback port; set http_require_token = true to require"
                " the per-install token there",
            )


def plan_sites(config: Config, listeners: Listeners, ingestor: Ingestor) -> Sites:
    """Raise the file limit, fit the budgets under it, and say how TCP peers are checked."""
    file_limit = raise_file_limit()
    limits = {
        listener: ConnectionLimits(
            max_connections=budget,
            idle_timeout=config.idle_timeout,
            header_timeout=config.header_timeout,
            body_timeout=config.body_timeout,
        )
        for listener, budget in _fit_budgets(config, file_limit).items()
    }
    paths = config.paths
    api = HttpSite(
        "api",
        listeners.api,
        owned_path=paths.api_socket if listeners.owns(paths.api_socket) else None,
        limits=limits["api"],
    )
    ingest = NdjsonSite(
        listeners.ingest,
        owned_path=paths.ingest_socket if listeners.owns(paths.ingest_socket) else None,
        ingestor=ingestor,
        max_line_bytes=config.max_line_bytes,
        max_connections=limits["ingest"].max_connections,
        idle_timeout=config.ingest_idle_timeout,
    )
    sites = Sites(api, None, ingest, file_limit, limits, config.http_require_token)
    if listeners.http is not None:
        sites.tcp = sites.add_tcp_site("tcp", listeners.http)
    return sites


def _fit_budgets(config: Config, file_limit: FileLimit) -> dict[str, int]:
    wanted = dict.fromkeys(("api", "ingest"), config.max_connections)
    tcp_ports = {
        "tcp": config.http_port,
        "otlp_http": config.otlp_http_port,
        "otlp_grpc": config.otlp_grpc_port,
    }
    wanted.update(
        {name: config.max_connections for name, port in tcp_ports.items() if port is not None}
    )
    budgets = fit_budgets(wanted, file_limit.soft, ACCEPT_BURST)
    if budgets != wanted:
        log.warning(
            "connection_caps_lowered",
            reason="limits.max_connections on every listener would not fit the file limit",
            file_limit=file_limit.soft,
            caps=budgets,
        )
    for name in tcp_ports:  # a socket passed by the service manager, though not configured
        budgets.setdefault(name, config.max_connections)
    return budgets
