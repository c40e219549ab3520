"""A small client for the daemon's api.sock (HTTP/1.1 over a Unix socket), stdlib only.

The CLI starts fast and needs no event loop for a request or two.
"""

from __future__ import annotations

import http.client
import json
import socket
import time
from pathlib import Path
from typing import Any

from agent_telemetryd.api_deadline import HEADER, deadline_for, format_deadline

DEFAULT_TIMEOUT = 30.0
# Requests that only read: nothing to refuse when they arrive late.
_READING = frozenset({"GET", "HEAD"})


class DaemonUnavailableError(RuntimeError):
    pass


class DaemonTimeoutError(DaemonUnavailableError):
    """The daemon took the request but gave no answer within `waited` seconds (stopped,
    or stuck). `accept_within` is set when the request carried a deadline: the daemon
    refuses it when it gets to it after that many seconds."""

    def __init__(self, waited: float, accept_within: float | None) -> None:
        self.waited = waited
        self.accept_within = accept_within
        super().__init__(f"the daemon did not answer within {waited:g} s")


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
                f"cannot reach the daemon at {self._path}: {error.strerror or error}"
            ) from None
        self.sock = sock


class ApiClient:
    """`timeout`: how long a request waits for its answer. `work`: more time to wait for a
    request whose work is long (an erasure request to a backend), which does not widen the
    time in which the daemon may still begin it."""

    def __init__(
        self, socket_path: Path, timeout: float = DEFAULT_TIMEOUT, work: float = 0.0
    ) -> None:
        self.socket_path = socket_path
        self.timeout = timeout
        self.work = work

    def request(self, method: str, path: str, body: Any = None) -> http.client.HTTPResponse:
        """The response, its body still to read: `read()` may time out as well, and the
        caller turns that into `self.timed_out(method)`."""
        connection = _UnixConnection(self.socket_path, self.timeout + self.work)
        payload = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json"} if payload is not None else {}
        if method not in _READING:
            # Past this the daemon refuses the request: this command will have told the
            # user it failed, so it must not take effect later (api_deadline.py).
            headers[HEADER] = format_deadline(deadline_for(time.time(), self.timeout))
        try:
            connection.request(method, path, body=payload, headers=headers)
            return connection.getresponse()
        except DaemonUnavailableError:
            raise
        except TimeoutError:
            raise self.timed_out(method) from None
        except OSError as error:
            raise DaemonUnavailableError(f"the daemon did not answer: {error}") from None

    def timed_out(self, method: str) -> DaemonTimeoutError:
        bounded = method not in _READING
        accept_within = deadline_for(0.0, self.timeout) if bounded else None
        return DaemonTimeoutError(self.timeout + self.work, accept_within)

    def json(self, method: str, path: str, body: Any = None) -> Any:
        response = self.request(method, path, body)
        try:
            data = response.read()
        except TimeoutError:
            raise self.timed_out(method) from None
        try:
            decoded = json.loads(data) if data else {}
        except ValueError:
            decoded = {"error": data.decode(errors="replace")[:200]}
        if response.status >= 400:
            message = decoded.get("error") if isinstance(decoded, dict) else None
            raise ApiError(response.status, message or f"HTTP {response.status}")
        return decoded
