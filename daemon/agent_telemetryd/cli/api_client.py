"""A small client for the daemon's api.sock (HTTP/1.1 over a Unix socket), stdlib only.

The CLI starts fast and needs no event loop for a request or two.
"""

from __future__ import annotations

import http.client
import json
import socket
from pathlib import Path
from typing import Any


class DaemonUnavailableError(RuntimeError):
    pass


class ApiError(RuntimeError):
    def __init__(self, status: int, message: str) -> None:
        self.status = status
        super().__init__(message)


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: Path, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(str(self._path))
        except OSError as error:
            sock.close()
            raise DaemonUnavailableError(
                f"cannot reach the daemon at {self._path}: {error.strerror}"
            ) from None
        self.sock = sock


class ApiClient:
    def __init__(self, socket_path: Path, timeout: float = 30.0) -> None:
        self.socket_path = socket_path
        self.timeout = timeout

    def request(self, method: str, path: str, body: Any = None) -> http.client.HTTPResponse:
        connection = _UnixConnection(self.socket_path, self.timeout)
        payload = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json"} if payload is not None else {}
        try:
            connection.request(method, path, body=payload, headers=headers)
            return connection.getresponse()
        except DaemonUnavailableError:
            raise
        except OSError as error:
            raise DaemonUnavailableError(f"the daemon did not answer: {error}") from None

    def json(self, method: str, path: str, body: Any = None) -> Any:
        response = self.request(method, path, body)
        data = response.read()
        try:
            decoded = json.loads(data) if data else {}
        except ValueError:
            decoded = {"error": data.decode(errors="replace")[:200]}
        if response.status >= 400:
            message = decoded.get("error") if isinstance(decoded, dict) else None
            raise ApiError(response.status, message or f"HTTP {response.status}")
        return decoded
