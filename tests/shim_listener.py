"""A Unix socket listener standing in for the daemon's ingest.sock in the shim tests."""

from __future__ import annotations

import json
import os
import select
import socket
import threading
import time
from pathlib import Path
from typing import Any

CONTROL_PREFIX = b'{"client_drops":'


class Listener:
    """Accepts connections on `path` and keeps each connection's complete lines.

    `lines` and `events()` are the events; a shim's drop-count lines (`{"client_drops": …}`)
    are kept apart in `control_lines` and summed by `client_drops()`.
    """

    def __init__(self, path: Path, reading: bool = True) -> None:
        self.path = path
        self.connections: list[list[bytes]] = []
        self.torn: list[bytes] = []  # bytes a connection left without a final newline
        self.reading = threading.Event()
        if reading:
            self.reading.set()
        self._lock = threading.Lock()
        self._conns: list[socket.socket] = []
        self._read_to_end: list[threading.Event] = []  # one per connection, set at its EOF
        self._wake_r, self._wake_w = os.pipe()  # wakes the accept thread at close()
        self._server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._server.bind(str(path))
        self._server.listen(64)
        self._server.setblocking(False)
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                readable, _, _ = select.select([self._server, self._wake_r], [], [])
            except (OSError, ValueError):  # close() closed the server between two selects
                return
            if self._wake_r in readable:
                return
            # Accepted and recorded under the lock, so settled() never sees a connection
            # that has left the listen queue but is not in `connections` yet.
            with self._lock:
                try:
                    conn, _ = self._server.accept()
                except BlockingIOError:
                    continue
                except OSError:
                    return
                conn.setblocking(True)
                lines: list[bytes] = []
                done = threading.Event()
                self.connections.append(lines)
                self._conns.append(conn)
                self._read_to_end.append(done)
            threading.Thread(target=self._read, args=(conn, lines, done), daemon=True).start()

    def _read(self, conn: socket.socket, lines: list[bytes], done: threading.Event) -> None:
        self.reading.wait()
        rest = b""
        try:
            while True:
                try:
                    data = conn.recv(65536)
                except OSError:
                    data = b""
                if not data:
                    break
                *complete, rest = (rest + data).split(b"\n")
                with self._lock:
                    lines.extend(complete)
            if rest:
                self.torn.append(rest)
        finally:
            done.set()

    @property
    def all_lines(self) -> list[bytes]:
        with self._lock:
            return [line for conn in self.connections for line in conn]

    @property
    def lines(self) -> list[bytes]:
        return [line for line in self.all_lines if not line.startswith(CONTROL_PREFIX)]

    @property
    def control_lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.all_lines if line.startswith(CONTROL_PREFIX)]

    def client_drops(self) -> dict[str, int]:
        """The drop counts the shims reported, summed by reason."""
        return sum_drops(self.control_lines)

    def events(self, count: int = 0, timeout: float = 5.0) -> list[dict[str, Any]]:
        """The events received, after waiting (up to `timeout`) until there are `count`."""
        if count:
            self.wait_for(count, timeout)
        return [json.loads(line) for line in self.lines]

    def wait_for(self, count: int, timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(self.lines) >= count:
                return True
            time.sleep(0.01)
        return len(self.lines) >= count

    def settled(self, timeout: float = 10.0) -> bool:
        """Wait until no connection is left in the listen queue and every accepted one
        has been read to its end. Once the agents that wrote have exited, nothing more
        can arrive after this: what `lines`, `torn` and `connections` hold is final."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                queued = bool(select.select([self._server], [], [], 0)[0])
                ends = list(self._read_to_end)
            if not queued and all(done.is_set() for done in ends):
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.01)

    def wait_closed(self, timeout: float = 10.0) -> bool:
        """Wait until every connection so far was read to its end (its writer closed it)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                ends = list(self._read_to_end)
            if all(done.is_set() for done in ends):
                return True
            time.sleep(0.01)
        return False

    def close(self) -> None:
        """Stop like a daemon that exits: no more accepts, every connection closed."""
        os.write(self._wake_w, b"x")
        self._server.close()
        with self._lock:
            for conn in self._conns:
                conn.shutdown(socket.SHUT_RDWR)
                conn.close()
        self.path.unlink(missing_ok=True)


def sum_drops(control_lines: list[dict[str, Any]]) -> dict[str, int]:
    total: dict[str, int] = {}
    for line in control_lines:
        for reason, count in line["client_drops"].items():
            total[reason] = total.get(reason, 0) + count
    return total
