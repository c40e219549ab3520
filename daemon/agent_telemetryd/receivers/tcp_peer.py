"""Who is on the other end of a loopback TCP connection.

Any local user can connect to 127.0.0.1. On a Unix socket the kernel says who the peer is
(SO_PEERCRED); on TCP it does not, but on Linux its socket table does: each line of
/proc/net/tcp (and tcp6) gives a socket's local and remote address and its owner's uid,
which is how identd answers. The client's end of a connection to the daemon is the line
whose local address is the daemon's peer and whose remote address is the daemon's own.
The kernel is asked for that one socket first (receivers/sock_diag.py: microseconds,
where printing the whole table takes milliseconds); the table is read where it cannot be.

Where that table cannot be read (macOS, a /proc mounted without it), the per-install
token can be required for TCP ingest instead (`http_require_token`); `status` says which
protection is active: `uid`, `token`, both, or `off`.
"""

from __future__ import annotations

import socket
import struct
import sys
from pathlib import Path

from agent_telemetryd.receivers import sock_diag

PROC_NET = Path("/proc/net")
_TABLES = {socket.AF_INET: "tcp", socket.AF_INET6: "tcp6"}
_TIME_WAIT = b"06"  # a closed socket waiting out its timer: the table shows uid 0 for it
# A listening socket's remote address in the table: all zeros.
_ANY_REMOTE = {socket.AF_INET: b"00000000:0000", socket.AF_INET6: b"0" * 32 + b":0000"}


def _table_address(family: int, host: str, port: int) -> bytes:
    """An address as the kernel prints it: each 32-bit word of the address in the
    machine's byte order as %08X, then the port as %04X."""
    packed = socket.inet_pton(family, host)
    words = struct.unpack(f"={len(packed) // 4}I", packed)
    return ("".join(f"{word:08X}" for word in words) + f":{port:04X}").encode()


def peer_uid(sock: socket.socket, proc_net: Path = PROC_NET) -> int | None:
    """The uid that owns the client's end of an accepted loopback TCP connection, or None
    when the table has no such socket (the client is gone, or the table is unreadable)."""
    try:
        ours = sock.getsockname()[:2]
        theirs = sock.getpeername()[:2]
    except OSError:
        return None
    return owner_uid(sock.family, theirs, ours, proc_net)


def owner_uid(
    family: int, theirs: tuple[str, int], ours: tuple[str, int], proc_net: Path = PROC_NET
) -> int | None:
    """The uid that owns the client's end (`theirs`) of a loopback TCP connection to this
    daemon's `ours`, when only the addresses are known (a gRPC peer); None as above. An
    IPv4 connection may be one between IPv6 sockets (`::ffff:<address>`, in tcp6), as a
    gRPC client makes: that form is looked up too."""
    found = _owner_uid(family, theirs, ours, proc_net)
    if found is None and family == socket.AF_INET:
        mapped = [(f"::ffff:{host}", port) for host, port in (theirs, ours)]
        found = _owner_uid(socket.AF_INET6, mapped[0], mapped[1], proc_net)
    return found


def _owner_uid(
    family: int, theirs: tuple[str, int], ours: tuple[str, int], proc_net: Path
) -> int | None:
    table = _TABLES.get(family)
    if table is None:
        return None
    if proc_net == PROC_NET:  # this machine's own table: ask for the one socket instead
        try:
            return sock_diag.owner_uid(family, theirs, ours)
        except (OSError, ValueError):
            pass  # netlink missing or refused here: read the table
    try:
        client_end = (
            b" " + _table_address(family, *theirs) + b" " + _table_address(family, *ours) + b" "
        )
        data = (proc_net / table).read_bytes()
    except (OSError, ValueError):
        return None
    start = data.find(client_end)
    if start == -1:
        return None
    end = data.find(b"\n", start)
    # local, remote, state, tx:rx queues, timer, retransmits, uid, ...
    fields = data[start : end if end != -1 else len(data)].split()
    if len(fields) < 7 or fields[2] == _TIME_WAIT:
        return None
    try:
        return int(fields[6])
    except ValueError:
        return None


def table_readable(listener: socket.socket, proc_net: Path = PROC_NET) -> bool:
    """True on Linux when the socket table for the listener's family can be read and
    lists the listener itself: then it is this network namespace's table."""
    try:
        address = listener.getsockname()[:2]
    except OSError:
        return False
    return table_lists(listener.family, address, proc_net)


def table_lists(family: int, listening: tuple[str, int], proc_net: Path = PROC_NET) -> bool:
    """`table_readable` for a listener known by its address alone (gRPC's, which listens
    on an IPv6 socket even for an IPv4 address: listed in tcp6 as `::ffff:<address>`)."""
    if not sys.platform.startswith("linux"):
        return False
    forms = [(family, listening)]
    if family == socket.AF_INET:
        forms.append((socket.AF_INET6, (f"::ffff:{listening[0]}", listening[1])))
    for form_family, (host, port) in forms:
        try:
            address = _table_address(form_family, host, port)
            data = (proc_net / _TABLES[form_family]).read_bytes()
        except (OSError, ValueError, KeyError):
            continue
        if b" " + address + b" " + _ANY_REMOTE[form_family] in data:
            return True
    return False


def protection(uid_check: bool, token_required: bool) -> str:
    """What `status` reports as `tcp_peer_check`."""
    if uid_check and token_required:
        return "uid+token"
    if uid_check:
        return "uid"
    return "token" if token_required else "off"
