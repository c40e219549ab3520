"""A Unix socket listener standing in for the daemon's ingest.sock in the shim tests."""

from __future__ import annotations

import json
import socket
import threading
import time
from pathlib import Path
from typing import Any


class Listener:
    """Accepts connections on `path` and keeps each connection's complete lines."""

    def __init__(self, path: Path, reading: bool = True) -> None:
        self.path = path
        self.connections: list[list[bytes]] = []
        self.torn: list[bytes] = []  # bytes a connection left without a final newline
        self.reading = threading.Event()
        if reading:
            self.reading.set()
        self._lock = threading.Lock()
        self._closed = False
        self._conns: list[socket.socket] = []
        self._server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._server.bind(str(path))
        self._server.listen(64)
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._server.accept()
            except OSError:
                return
            lines: list[bytes] = []
            with self._lock:
                self.connections.append(lines)
                self._conns.append(conn)
            threading.Thread(target=self._read, args=(conn, lines), daemon=True).start()

    def _read(self, conn: socket.socket, lines: list[bytes]) -> None:
        self.reading.wait()
        rest = b""
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

    @property
    def lines(self) -> list[bytes]:
        with self._lock:
            return [line for conn in self.connections for line in conn]

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

    def close(self) -> None:
        """Stop like a daemon that exits: no more accepts, every connection closed."""
        self._server.close()
        with self._lock:
            for conn in self._conns:
                conn.shutdown(socket.SHUT_RDWR)
                conn.close()
        self.path.unlink(missing_ok=True)
