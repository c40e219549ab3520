"""Listening sockets handed over by systemd socket activation (sd_listen_fds without libsystemd).

systemd passes sockets as fds 3, 4, … and describes them in the environment:
``LISTEN_PID`` (the process they are meant for), ``LISTEN_FDS`` (how many) and
``LISTEN_FDNAMES`` (colon-separated names). The daemon calls :func:`inherited_sockets` once
at startup and uses a socket by name instead of binding its own, so an activated and a
self-started daemon run one code path.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import MutableMapping

__all__ = ["SOCKET_NAMES", "inherited_sockets", "name_for_address"]

log = logging.getLogger(__name__)

#: The names the daemon looks sockets up by.
SOCKET_NAMES = ("ingest", "api", "http")

# sd_listen_fds(3): the first passed fd is always 3, after stdin, stdout and stderr.
LISTEN_FDS_START = 3

_ENV_KEYS = ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES")

# The socket file names in the runtime dir (docs/architecture.md) and the names they map to.
_UNIX_NAMES = {"ingest.sock": "ingest", "api.sock": "api"}


def inherited_sockets(
    environ: MutableMapping[str, str] = os.environ,
) -> dict[str, socket.socket]:
    """Return the listening sockets systemd passed to this process, keyed by name.

    Names come from ``LISTEN_FDNAMES`` when it names one of :data:`SOCKET_NAMES`; otherwise
    from the socket's address (``…/ingest.sock`` → ``ingest``, ``…/api.sock`` → ``api``, a
    TCP socket → ``http``). One ``.socket`` unit gives all its sockets the same name, so the
    address is what tells them apart in the shipped unit. A socket that matches neither is
    kept as ``fd<N>`` so it is at least visible in logs.

    The sockets come back non-blocking and close-on-exec, and the three variables are
    removed from ``environ`` in every case, so a child process never believes the sockets
    are meant for it. Returns an empty dict when the process was not socket-activated.
    """
    listen_pid = environ.get("LISTEN_PID")
    listen_fds = environ.get("LISTEN_FDS")
    listen_fdnames = environ.get("LISTEN_FDNAMES")
    for key in _ENV_KEYS:
        environ.pop(key, None)

    if listen_pid is None or listen_fds is None:
        return {}
    try:
        pid = int(listen_pid)
        count = int(listen_fds)
    except ValueError:
        log.warning("ignoring socket activation: LISTEN_PID/LISTEN_FDS are not numbers")
        return {}
    if pid != os.getpid():
        # The variables were inherited from a parent that was activated, not meant for us.
        return {}
    if count <= 0:
        return {}

    names: list[str | None] = [None] * count
    if listen_fdnames is not None:
        given = listen_fdnames.split(":")
        if len(given) == count:
            names = list(given)
        else:
            log.warning(
                "LISTEN_FDNAMES has %d names for %d sockets; naming them by address",
                len(given),
                count,
            )

    sockets: dict[str, socket.socket] = {}
    for index, given_name in enumerate(names):
        fd = LISTEN_FDS_START + index
        sock = _adopt(fd)
        if sock is None:
            continue
        name = given_name if given_name in SOCKET_NAMES else name_for_address(sock)
        if name is None or name in sockets:
            name = f"fd{fd}"
        sockets[name] = sock
    return sockets


def name_for_address(sock: socket.socket) -> str | None:
    """The :data:`SOCKET_NAMES` entry a listening socket's own address stands for, if any."""
    if sock.family in (socket.AF_INET, socket.AF_INET6):
        return "http"
    if sock.family == socket.AF_UNIX:
        address = sock.getsockname()
        if isinstance(address, bytes):
            address = address.decode(errors="replace")
        return _UNIX_NAMES.get(os.path.basename(address or ""))
    return None


def _adopt(fd: int) -> socket.socket | None:
    """Wrap one passed fd as a socket object, or close it if it is not a listening stream."""
    try:
        # Close-on-exec first: whatever happens next, a child must not keep the fd open.
        os.set_inheritable(fd, False)
        # With fileno= Python asks the kernel for family, type and protocol.
        sock = socket.socket(fileno=fd)
    except OSError as exc:
        log.warning("ignoring passed fd %d: not a socket (%s)", fd, exc.strerror)
        return None
    listening = sock.type == socket.SOCK_STREAM and bool(
        sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
    )
    if not listening:
        log.warning("ignoring passed fd %d: not a listening stream socket", fd)
        sock.close()
        return None
    sock.setblocking(False)
    return sock
