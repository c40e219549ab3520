"""sd_notify(3) in pure Python: tell the service manager when the daemon is ready or stopping.

The protocol is one datagram of ``KEY=VALUE`` lines to the AF_UNIX socket named by
``NOTIFY_SOCKET`` (a leading ``@`` means the abstract namespace). Every method is a no-op
when the variable is absent, so the daemon calls them unconditionally whether it runs under
systemd, launchd or a terminal.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Mapping

__all__ = ["SdNotifier"]

log = logging.getLogger(__name__)

# A send can only block if the manager stopped reading; never hold the daemon up for long.
_SEND_TIMEOUT_S = 2.0


class SdNotifier:
    """Sends state changes to ``NOTIFY_SOCKET``; read once from ``environ`` at construction."""

    def __init__(self, environ: Mapping[str, str] = os.environ) -> None:
        self._address = _socket_address(environ.get("NOTIFY_SOCKET", ""))
        self._watchdog_usec = _watchdog_usec(environ)
        self._sock: socket.socket | None = None

    @property
    def enabled(self) -> bool:
        """True when there is a service manager to talk to."""
        return self._address is not None

    def notify(self, state: str) -> bool:
        """Send one raw state string; False when disabled or the send failed.

        A failure is logged, never raised: losing a notification must not take the daemon
        down (systemd then times the start out, which is the visible symptom).
        """
        if self._address is None:
            return False
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                self._sock.settimeout(_SEND_TIMEOUT_S)
            self._sock.sendto(state.encode(), self._address)
        except OSError as exc:
            log.warning("sd_notify failed: %s", exc.strerror or exc)
            return False
        return True

    def ready(self) -> bool:
        """The daemon accepts on its sockets and the store is open."""
        return self.notify("READY=1")

    def stopping(self) -> bool:
        """Shutdown has begun (sent on SIGTERM, before draining)."""
        return self.notify("STOPPING=1")

    def status(self, text: str) -> bool:
        """A one-line human status shown by ``systemctl --user status``."""
        # STATUS= ends at the newline, which would start a new (bogus) assignment.
        return self.notify("STATUS=" + " ".join(text.split()))

    def watchdog(self) -> bool:
        """Tell the manager the daemon is alive."""
        return self.notify("WATCHDOG=1")

    def watchdog_interval(self) -> float | None:
        """Seconds within which the manager expects a ``WATCHDOG=1``, or None when it does not."""
        if self._address is None or self._watchdog_usec is None:
            return None
        return self._watchdog_usec / 1_000_000

    async def watchdog_loop(self, stop_event: asyncio.Event) -> None:
        """Pet the watchdog at half its interval until ``stop_event`` is set.

        Returns at once when no watchdog is configured: an idle daemon must not wake up
        for nothing.
        """
        interval = self.watchdog_interval()
        if interval is None:
            return
        period = interval / 2
        while not stop_event.is_set():
            self.watchdog()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop_event.wait(), timeout=period)

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def _socket_address(value: str) -> str | None:
    if value.startswith("@"):
        # Abstract namespace: the kernel name starts with a NUL byte instead of "@".
        return "\0" + value[1:]
    if value.startswith("/"):
        return value
    # Empty, or a transport this module does not speak (systemd also allows vsock:).
    if value:
        log.warning("ignoring NOTIFY_SOCKET with an unsupported address")
    return None


def _watchdog_usec(environ: Mapping[str, str]) -> int | None:
    raw = environ.get("WATCHDOG_USEC")
    if not raw:
        return None
    watchdog_pid = environ.get("WATCHDOG_PID")
    if watchdog_pid:
        try:
            if int(watchdog_pid) != os.getpid():
                # The watchdog was set up for a parent process, not for us.
                return None
        except ValueError:
            return None
    try:
        usec = int(raw)
    except ValueError:
        return None
    return usec if usec > 0 else None
