"""The owner of one TCP socket, asked of the Linux kernel by the socket's four addresses.

/proc/net/tcp prints every TCP socket the machine has, walking every bucket of the
kernel's connection table: 3.9 ms for a table of two sockets on a machine with a large
table, ~25 ms with 4,000 sockets; a client that opens a connection per request pays it
every time. NETLINK_SOCK_DIAG (the interface `ss` uses) answers for one socket named by
its local and remote address and port, looked up in the kernel's hash table: the same
uid, in tens of microseconds whatever the machine holds. linux/inet_diag.h and
linux/sock_diag.h give the layouts below.

`owner_uid` raises OSError where the kernel does not answer (not Linux, netlink refused
by a sandbox): then the caller reads the table instead.
"""

from __future__ import annotations

import errno
import itertools
import socket
import struct

NETLINK_SOCK_DIAG = 4
SOCK_DIAG_BY_FAMILY = 20
NLMSG_ERROR = 2
NLM_F_REQUEST = 1
_NO_COOKIE = 0xFFFFFFFF  # INET_DIAG_NOCOOKIE: match the socket by its addresses alone
_TIME_WAIT = 6  # a closed socket waiting out its timer: the kernel reports uid 0 for it
_ALL_STATES = 0xFFFFFFFF

_HEADER = struct.Struct("=IHHII")  # nlmsghdr: length, type, flags, sequence, port id
# inet_diag_req_v2: family, protocol, extensions, pad, states; then inet_diag_sockid:
# source and destination ports (network order), source and destination addresses
# (16 bytes each, an IPv4 one in the first 4), interface, cookie (two words).
_REQUEST = struct.Struct("=BBBxI")
_SOCKET_ID = struct.Struct("!HH16s16s")
_SOCKET_ID_TAIL = struct.Struct("=III")
# inet_diag_msg: family, state, timer, retransmits, the 48-byte socket id, expires,
# receive queue, send queue, uid, inode.
_MESSAGE = struct.Struct("=BBBB48sIIIII")
_ERROR = struct.Struct("=i")
_sequence = itertools.count(1)
_NOT_YET = object()


def owner_uid(family: int, local: tuple[str, int], remote: tuple[str, int]) -> int | None:
    """The uid owning the TCP socket whose own end is `local` and whose peer is `remote`;
    None when the kernel has no such socket (or only its TIME_WAIT remains).

    Raises OSError when the question cannot be asked or is refused."""
    netlink = getattr(socket, "AF_NETLINK", None)
    if netlink is None:
        raise OSError(errno.EAFNOSUPPORT, "no netlink on this system")
    sequence = next(_sequence) & 0xFFFFFFFF
    request = _request(family, local, remote, sequence)
    with socket.socket(netlink, socket.SOCK_DGRAM, NETLINK_SOCK_DIAG) as query:
        query.settimeout(1.0)
        query.sendto(request, (0, 0))
        while True:
            answer = query.recv(8192)
            found = _read_answer(answer, sequence)
            if found is not _NOT_YET:
                return found  # type: ignore[return-value]


def _request(family: int, local: tuple[str, int], remote: tuple[str, int], sequence: int) -> bytes:
    body = (
        _REQUEST.pack(family, socket.IPPROTO_TCP, 0, _ALL_STATES)
        + _SOCKET_ID.pack(local[1], remote[1], _address(family, local[0]),
                          _address(family, remote[0]))
        + _SOCKET_ID_TAIL.pack(0, _NO_COOKIE, _NO_COOKIE)
    )  # fmt: skip
    header = _HEADER.pack(_HEADER.size + len(body), SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST, sequence, 0)
    return header + body


def _address(family: int, host: str) -> bytes:
    return socket.inet_pton(family, host).ljust(16, b"\0")


def _read_answer(data: bytes, sequence: int) -> object:
    """The uid (or None) that `data` answers for `sequence`; _NOT_YET for another answer."""
    offset = 0
    while offset + _HEADER.size <= len(data):
        length, kind, _, answered, _ = _HEADER.unpack_from(data, offset)
        if length < _HEADER.size:
            break
        if answered == sequence:
            body = offset + _HEADER.size
            if kind == NLMSG_ERROR:
                (error,) = _ERROR.unpack_from(data, body)
                if error == 0 or -error == errno.ENOENT:  # no socket with those addresses
                    return None
                raise OSError(-error, "sock_diag refused the question")
            if kind == SOCK_DIAG_BY_FAMILY and length >= _HEADER.size + _MESSAGE.size:
                fields = _MESSAGE.unpack_from(data, body)
                state, uid = fields[1], fields[8]
                return None if state == _TIME_WAIT else uid
        offset += (length + 3) & ~3
    return _NOT_YET
