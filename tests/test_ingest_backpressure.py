"""ingest.sock under a writer that falls behind: reading stops, memory stays bounded, and
every line written arrives once the writer catches up.

A real ingest.sock site on a real Unix socket, with an agent writing as fast as the socket
takes; only the store is replaced, by one that holds what it is given until told to commit.
"""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path
from typing import Any

from agent_telemetryd.events import Limits
from agent_telemetryd.ingest import Ingestor
from agent_telemetryd.receivers.ndjson_socket import NdjsonSite
from agent_telemetryd.receivers.read_turns import MAX_QUEUED_EVENTS

LINE = b'{"event":"bp","properties":{"n":1}}\n'
LINES = 60_000


class HeldWriter:
    """Takes rows and keeps them queued until `commit_all()`: a writer stuck on the disk."""

    def __init__(self) -> None:
        self.rows: list[Any] = []
        self.queued_events = 0

    def submit(self, rows: list[Any], counters: dict[str, int], **_: Any) -> None:
        self.rows.extend(rows)
        self.queued_events += len(rows)

    def commit_all(self) -> None:
        self.queued_events = 0


async def test_a_writer_that_falls_behind_stops_the_reading_and_nothing_is_lost(
    tmp_path: Path,
) -> None:
    writer = HeldWriter()
    ingestor = Ingestor(
        limits=Limits(),
        mode=lambda: "local",
        writer=lambda: writer,  # type: ignore[arg-type, return-value]
        anonymous_id=lambda: "id",
    )
    path = tmp_path / "ingest.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen()
    listener.setblocking(False)
    site = NdjsonSite(
        listener,
        owned_path=path,
        ingestor=ingestor,
        max_line_bytes=64 * 1024,
        max_connections=8,
        idle_timeout=None,
    )
    await site.start()
    loop = asyncio.get_running_loop()
    agent = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    agent.setblocking(False)
    await loop.sock_connect(agent, str(path))
    payload = LINE * LINES
    sent = 0
    try:
        # Write until the socket takes no more: the daemon has stopped reading.
        while sent < len(payload):
            try:
                sent += agent.send(payload[sent:])
            except BlockingIOError:
                await asyncio.sleep(0.05)
                try:
                    sent += agent.send(payload[sent:])
                except BlockingIOError:
                    break
        assert sent < len(payload), "the socket never filled up: nothing held the reading"
        held = len(writer.rows)
        # What was handed over is bounded by the limit plus at most one read per connection.
        one_read = 256 * 1024 // len(LINE) + 1
        assert MAX_QUEUED_EVENTS <= held <= MAX_QUEUED_EVENTS + one_read, held
        await asyncio.sleep(0.1)  # turns come and go; still nothing more is read
        assert len(writer.rows) == held

        writer.commit_all()  # the writer caught up: reading resumes, up to the limit again
        while sent < len(payload) or len(writer.rows) < LINES:
            if sent < len(payload):
                sent += await _send_some(loop, agent, payload[sent:])
            else:
                await asyncio.sleep(0.01)
            if writer.queued_events >= MAX_QUEUED_EVENTS:
                writer.commit_all()
        assert len(writer.rows) == LINES
    finally:
        agent.close()
        site.connections.accepting = False
        for connection in list(site.connections.open):
            connection.close_now()
        listener.close()


async def _send_some(loop: asyncio.AbstractEventLoop, sock: socket.socket, data: bytes) -> int:
    try:
        return sock.send(data)
    except BlockingIOError:
        await asyncio.sleep(0.01)
        return 0
