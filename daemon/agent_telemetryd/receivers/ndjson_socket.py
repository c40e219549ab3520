"""ingest.sock: newline-delimited JSON, one event a line, never a reply.

A bad line is counted and skipped and the connection goes on. A line longer than the
limit is skipped up to the next newline without being held in memory. Whatever a peer
wrote before it died is taken: the final line is read at EOF even without its newline.

Closing a connection the daemon did not get EOF on (idle, or at shutdown) must not lose a
line an agent is writing at that moment. So it is closed in steps. First the daemon's
sending side: the Node shim sees the end, hangs up, and writes its next events on a new
connection. After a short grace, on Linux, its receiving side (`shutdown(SHUT_RD)`): from
that instant a write fails with EPIPE instead of vanishing, and every byte written before
is still queued for the daemon to read to the end. The Python shim, which never reads,
meets the EPIPE and resends from the first line not fully written; the Node shim meets it
only if it wrote in the grace window without having seen the end, and then counts those
lines as `connection_lost`. Other systems discard queued bytes on SHUT_RD, so there an
idle connection is left open (the cap still bounds how many).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import select
import socket
import sys
from pathlib import Path
from typing import Any

from agent_telemetryd.events import EventError, parse_line
from agent_telemetryd.ingest import Ingestor, Source
from agent_telemetryd.lazy_log import get_logger
from agent_telemetryd.receivers.connections import (
    ACCEPT_BURST,
    Drain,
    ListenerConnections,
    deepen_listen_queue,
)
from agent_telemetryd.receivers.peer import peer_credentials
from agent_telemetryd.receivers.read_turns import ReadTurns
from agent_telemetryd.receivers.turn_lines import TurnLines

log = get_logger("agent_telemetryd.ingest")

# Linux keeps what was queued readable after SHUT_RD and fails later writes (see above).
LOSSLESS_CLOSE = sys.platform.startswith("linux")
# After the daemon's side is shut for sending, how long a peer gets to hang up by itself
# before its writes are refused.
HANG_UP_GRACE_SECONDS = 0.25


class NdjsonProtocol(asyncio.Protocol):
    def __init__(
        self,
        ingestor: Ingestor,
        max_line_bytes: int,
        connections: ListenerConnections | None = None,
        idle_timeout: float | None = None,
        turns: ReadTurns | None = None,
        lines: TurnLines | None = None,
    ) -> None:
        self._ingestor = ingestor
        self._turns = turns
        # Where complete lines go: kept for the end of the turn that read them, or
        # straight to the ingestor (`lines` is the one `turns` hands over).
        self._lines = lines if lines is not None else TurnLines(ingestor)
        self._max_line = max_line_bytes
        # Without a listener's budget (framing tests) the connection is simply not counted.
        self._connections = connections or ListenerConnections("ingest", cap=2**31)
        self._idle_timeout = idle_timeout if LOSSLESS_CLOSE else None
        self._pending = bytearray()
        self._skipping = False  # inside an oversize line, dropping bytes until b"\n"
        self._source = Source("unix")
        self._transport: asyncio.Transport | None = None
        self._fd = -1
        self._admitted = False
        self._closing = False
        self._last_data = 0.0
        self._timer: asyncio.TimerHandle | None = None

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
        if not self._connections.admit(self):
            transport.abort()
            return
        self._admitted = True
        self._transport = transport
        assert sock is not None
        self._fd = sock.fileno()
        self._source = Source("unix", pid=pid)
        self._ingestor.agent_connected(pid)  # what it spooled meanwhile may be taken now
        loop = asyncio.get_running_loop()
        self._last_data = loop.time()
        if self._idle_timeout is not None:
            self._timer = loop.call_later(self._idle_timeout, self._check_idle)

    def data_received(self, data: bytes) -> None:
        if self._timer is not None or self._turns is not None:
            # A timestamp, not a new timer per read: this runs for every read of a busy agent.
            now = asyncio.get_running_loop().time()
            if self._turns is not None and self._transport is not None:
                quiet = now - self._last_data
                self._turns.hold(self._transport, self._fd, self, len(data), quiet)
            self._last_data = now
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
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._admitted:
            self._connections.release(self)
            self._admitted = False
            # An agent that gave up on a slow daemon at its exit spooled the rest before
            # its connection closed: take it now, not when some other agent next connects.
            self._ingestor.agent_connected(self._source.pid)

    # --- closing ---------------------------------------------------------------------

    def finish(self, grace: float) -> None:
        """Close without losing a line: stop sending, give the peer `grace` seconds to
        hang up, then refuse its writes and read what it wrote to the end."""
        transport = self._transport
        if transport is None or self._closing or transport.is_closing():
            return
        self._closing = True
        with contextlib.suppress(OSError):
            transport.write_eof()
        asyncio.get_running_loop().call_later(grace, self._stop_reading)

    def close_now(self) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.abort()

    def _stop_reading(self) -> None:
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        if not LOSSLESS_CLOSE:
            transport.close()
            return
        sock = transport.get_extra_info("socket")
        try:
            sock.shutdown(socket.SHUT_RD)  # the read side then ends at EOF: eof_received
        except OSError:
            transport.close()

    def _check_idle(self) -> None:
        self._timer = None
        assert self._idle_timeout is not None
        loop = asyncio.get_running_loop()
        quiet_until = self._last_data + self._idle_timeout
        if loop.time() < quiet_until:
            self._timer = loop.call_at(quiet_until, self._check_idle)
            return
        self._connections.timed_out += 1
        self.finish(HANG_UP_GRACE_SECONDS)

    # --- lines -----------------------------------------------------------------------

    def _flush_tail(self) -> None:
        if self._pending and not self._skipping:
            tail = bytes(self._pending)
            self._pending.clear()
            if _is_document(tail):
                self._take([tail])  # a sender killed right after its last line
            elif not tail.isspace():
                # Cut off mid-line as its sender went away: a shim that gives up on a
                # stalled daemon sends that line again whole (spool or next connection),
                # so it is no bad input of the user's and is not counted as rejected.
                self._lines.count_torn_line(self._source)
        self._pending.clear()

    def _check_oversize_tail(self) -> None:
        if len(self._pending) > self._max_line:
            self._pending.clear()
            self._skipping = True
            self._lines.reject_unparsable(
                f"line longer than {self._max_line} bytes; skipped to the next newline",
                self._source,
            )

    def _take(self, lines: list[bytes]) -> None:
        limit = self._max_line
        sizes = list(map(len, lines))
        if sizes and min(sizes) and max(sizes) <= limit and not any(map(bytes.isspace, lines)):
            # The usual read: every line a document's, checked in C, not line by line.
            self._lines.take(lines, self._source)
            return
        good = [line for line in lines if len(line) <= limit and line and not line.isspace()]
        if len(good) != len(lines):
            for line in lines:
                if len(line) > limit:
                    self._lines.reject_unparsable(
                        f"line longer than {limit} bytes; skipped", self._source
                    )
        if good:
            self._lines.take(good, self._source)


def _is_document(line: bytes) -> bool:
    try:
        parse_line(line)
    except EventError:
        return False
    return True


class NdjsonSite:
    """ingest.sock served: started once, then stopped in two steps at shutdown."""

    def __init__(
        self,
        sock: socket.socket,
        *,
        owned_path: Path | None,
        ingestor: Ingestor,
        max_line_bytes: int,
        max_connections: int,
        idle_timeout: float | None,
    ) -> None:
        self._sock = sock
        self._owned_path = owned_path  # None when systemd holds the socket
        self._ingestor = ingestor
        self._max_line = max_line_bytes
        self._idle_timeout = idle_timeout
        self.connections = ListenerConnections("ingest", max_connections)
        self._lines = TurnLines(ingestor)
        self._turns = ReadTurns(ingestor.queued_events, batch=self._lines)
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_unix_server(
            lambda: NdjsonProtocol(
                self._ingestor,
                self._max_line,
                self.connections,
                self._idle_timeout,
                self._turns,
                self._lines,
            ),
            sock=self._sock,
            backlog=ACCEPT_BURST,
        )
        deepen_listen_queue(self._sock)

    async def stop_accepting(self, drain: Drain) -> None:
        """No new connections; the ones agents already queued are still taken, and every
        connection is asked to finish.

        The socket file goes first, so no agent can connect any more (the shims keep
        their events and deliver them to the next daemon); then every connection already
        in the listen queue is accepted, since closing the listener would drop those and
        whatever their agents wrote. Under systemd the socket is systemd's: it keeps the
        queue for the next start, so this daemon just stops accepting.
        """
        if not self.connections.accepting:
            return
        self.connections.accepting = False
        if self._server is not None:
            if self._owned_path is not None:
                with contextlib.suppress(FileNotFoundError):
                    self._owned_path.unlink()
                await self._take_queued()
            self._server.close()
        grace = min(HANG_UP_GRACE_SECONDS, drain.remaining())
        for connection in list(self.connections.open):
            assert isinstance(connection, NdjsonProtocol)
            connection.finish(grace)

    async def drain(self, drain: Drain) -> None:
        """Read each connection to its end, within the shutdown's deadline."""
        await self.stop_accepting(drain)
        await self.connections.wait_empty(drain)

    def stats(self) -> dict[str, Any]:
        return self.connections.stats()

    async def _take_queued(self) -> None:
        # asyncio's accept callback takes queued connections whenever the listener is
        # readable; yield until it has none left (nothing new can arrive: the path is gone).
        for _ in range(10_000):
            readable, _, _ = select.select([self._sock], [], [], 0)
            if not readable:
                break
            await asyncio.sleep(0)
        for _ in range(3):  # let the accepted connections reach connection_made
            await asyncio.sleep(0)
