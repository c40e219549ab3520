"""The non-blocking connection to ingest.sock, and what the writer waits on."""

from __future__ import annotations

import os
import select
import socket
import struct
import sys
import threading

from agent_telemetry._paths import private_dir_problem

# Python ignores SIGPIPE, but a host program may not; a dead daemon must not kill the agent.
SEND_FLAGS = getattr(socket, "MSG_NOSIGNAL", 0)
_SO_NOSIGPIPE = 0x1022  # macOS <sys/socket.h>; Python does not export it
_LOCAL_PEERCRED = 0x001  # macOS <sys/un.h>, level SOL_LOCAL (0)


def peer_uid(sock: socket.socket, path: str) -> int:
    """The uid of the process listening on `sock`."""
    if hasattr(socket, "SO_PEERCRED"):
        raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        return struct.unpack("3i", raw)[1]
    if sys.platform == "darwin":
        # struct xucred { u_int cr_version; uid_t cr_uid; short cr_ngroups; gid_t cr_groups[16]; }
        raw = sock.getsockopt(0, _LOCAL_PEERCRED, 76)
        return struct.unpack_from("Ii", raw)[1]
    return os.stat(path).st_uid


def open_connection(path: str) -> socket.socket | None:
    """A connected non-blocking socket to the user's own daemon, or None for now.

    Not when the socket's folder is not the user's own private folder (someone else could
    have put the socket there, or could swap it), nor when the listener is another user.
    """
    if private_dir_problem(os.path.dirname(path) or ".") is not None:
        return None
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        sock.connect(path)
        # A socket another user put in our path would otherwise read every event we send.
        if peer_uid(sock, path) != os.geteuid():
            raise PermissionError("ingest socket belongs to another user")
        if sys.platform == "darwin":
            sock.setsockopt(socket.SOL_SOCKET, _SO_NOSIGPIPE, 1)
    except OSError:
        # Missing, refused, listen queue full (EAGAIN) or not ours: the caller retries later.
        sock.close()
        return None
    return sock


class Wakeup:
    """What the writer thread sleeps on; any thread, or a signal handler, may raise it.

    Not threading.Event: its set() takes a lock, so a signal handler calling track() while
    the interrupted code was inside set() would wait for itself forever. Here set() is one
    non-blocking send() on a socket pair, and the writer can wait for its connection to
    take bytes and for a wakeup at once.
    """

    def __init__(self) -> None:
        self._event: threading.Event | None = None
        try:
            self._reader, self._writer = socket.socketpair()
            self._reader.setblocking(False)
            self._writer.setblocking(False)
        except OSError:
            # Out of file descriptors: a plain Event still works outside signal handlers.
            self._event = threading.Event()

    def set(self) -> None:
        if self._event is not None:
            self._event.set()
            return
        try:  # noqa: SIM105 (suppress() would cost more than the send itself)
            self._writer.send(b"\0")
        except OSError:
            pass  # full: a wakeup is pending anyway

    def clear(self) -> None:
        if self._event is not None:
            self._event.clear()
            return
        try:
            while self._reader.recv(4096):
                pass
        except OSError:
            pass  # drained

    def wait(self, timeout: float | None = None, writable: socket.socket | None = None) -> None:
        """Sleep until set, until `writable` can take more bytes, or `timeout` seconds pass."""
        if self._event is not None:
            if writable is None:
                self._event.wait(timeout)
            else:
                wait_ready([], [writable], 0.01 if timeout is None else min(timeout, 0.01))
            return
        wait_ready([self._reader], [writable] if writable is not None else [], timeout)

    def close(self) -> None:
        if self._event is None:
            self._reader.close()
            self._writer.close()


def wait_ready(
    readable: list[socket.socket], writable: list[socket.socket], timeout: float | None
) -> None:
    """Sleep until a socket of `readable` has bytes, one of `writable` room, or `timeout`."""
    # poll(), not select(): an agent may well have more than 1024 files open.
    if hasattr(select, "poll"):
        poller = select.poll()
        for sock in readable:
            poller.register(sock, select.POLLIN)
        for sock in writable:
            poller.register(sock, select.POLLOUT)
        poller.poll(None if timeout is None else timeout * 1000)
    else:
        select.select(readable, writable, [], timeout)
