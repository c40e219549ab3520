"""Who is on the other end of a Unix socket: only the daemon's own user may talk to it."""

from __future__ import annotations

import os
import socket
import struct
import sys


def peer_credentials(sock: socket.socket) -> tuple[int, int | None]:
    """(uid, pid) of the connected peer; pid is None where the platform does not say."""
    if sys.platform.startswith("linux"):
        raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        pid, uid, _gid = struct.unpack("3i", raw)
        return uid, pid
    # macOS and the BSDs: getpeereid(2), which Python exposes through LOCAL_PEERCRED's
    # xucred; the uid is the second field.
    local_peercred = getattr(socket, "LOCAL_PEERCRED", 0x001)
    raw = sock.getsockopt(0, local_peercred, struct.calcsize("2ih16i"))
    _version, uid = struct.unpack_from("2i", raw)
    return uid, None


def is_same_user(sock: socket.socket | None) -> bool:
    if sock is None or sock.family != socket.AF_UNIX:
        return False
    try:
        uid, _pid = peer_credentials(sock)
    except OSError:
        return False
    return uid == os.geteuid()
