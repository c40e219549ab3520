"""The non-blocking connection to ingest.sock, and nothing else."""

from __future__ import annotations

import os
import select
import socket
import struct
import sys

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
    """A connected non-blocking socket to the user's own daemon, or None for now."""
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


def wait_writable(sock: socket.socket, timeout: float) -> None:
    """Sleep until `sock` can take more bytes, or `timeout` seconds pass."""
    # poll(), not select(): an agent may well have more than 1024 files open.
    if hasattr(select, "poll"):
        poller = select.poll()
        poller.register(sock, select.POLLOUT)
        poller.poll(timeout * 1000)
    else:
        select.select([], [sock], [], timeout)
