"""ingest.sock: newline-delimited JSON, one event a line, never a reply (DESIGN §6).

A bad line is counted and skipped and the connection goes on. A line longer than the
limit is skipped up to the next newline without being held in memory. Whatever a peer
wrote before it died is taken: the final line is read at EOF even without its newline.
"""

from __future__ import annotations

import asyncio
import os
import socket

import structlog

from agent_telemetryd.ingest import Ingestor, Source
from agent_telemetryd.receivers.peer import peer_credentials

log = structlog.get_logger("agent_telemetryd.ingest")


class NdjsonProtocol(asyncio.Protocol):
    def __init__(self, ingestor: Ingestor, max_line_bytes: int) -> None:
        self._ingestor = ingestor
        self._max_line = max_line_bytes
        self._pending = bytearray()
        self._skipping = False  # inside an oversize line, dropping bytes until b"\n"
        self._source = Source("unix")

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        sock: socket.socket | None = transport.get_extra_info("socket")
        try:
            uid, pid = peer_credentials(sock) if sock is not None else (-1, None)
        except OSError:
            uid, pid = -1, None
        if uid != os.geteuid():
            log.warning("foreign_peer_refused", peer_uid=uid, socket="ingest")
            transport.abort()
            return
        self._source = Source("unix", pid=pid)
        self._ingestor.agent_connected(pid)  # what it spooled meanwhile may be taken now

    def data_received(self, data: bytes) -> None:
        if self._skipping:
            newline = data.find(b"\n")
            if newline == -1:
                return
            data = data[newline + 1 :]
            self._skipping = False
        if not self._pending and data.endswith(b"\n"):
            # The usual read: whole lines only, nothing held over, so no buffer copies.
            # _take() still skips any line over the limit.
            lines = data.split(b"\n")
            lines.pop()  # the empty piece after the final newline
            self._take(lines)
            return
        self._pending += data
        last_newline = self._pending.rfind(b"\n")
        if last_newline == -1:
            self._check_oversize_tail()
            return
        complete = bytes(self._pending[:last_newline])
        del self._pending[: last_newline + 1]
        self._check_oversize_tail()
        self._take(complete.split(b"\n"))

    def eof_received(self) -> bool:
        self._flush_tail()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._flush_tail()

    def _flush_tail(self) -> None:
        if self._pending and not self._skipping:
            tail = bytes(self._pending)
            self._pending.clear()
            self._take([tail])
        self._pending.clear()

    def _check_oversize_tail(self) -> None:
        if len(self._pending) > self._max_line:
            self._pending.clear()
            self._skipping = True
            self._ingestor.reject_unparsable(
                f"line longer than {self._max_line} bytes; skipped to the next newline",
                self._source,
            )

    def _take(self, lines: list[bytes]) -> None:
        limit = self._max_line
        good = [line for line in lines if len(line) <= limit and line and not line.isspace()]
        if len(good) != len(lines):
            for line in lines:
                if len(line) > limit:
                    self._ingestor.reject_unparsable(
                        f"line longer than {limit} bytes; skipped", self._source
                    )
        if good:
            self._ingestor.accept_lines(good, self._source)


async def serve_ndjson(
    sock: socket.socket, ingestor: Ingestor, max_line_bytes: int
) -> asyncio.Server:
    loop = asyncio.get_running_loop()
    return await loop.create_unix_server(
        lambda: NdjsonProtocol(ingestor, max_line_bytes), sock=sock
    )
