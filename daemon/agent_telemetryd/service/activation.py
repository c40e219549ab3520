"""Listening sockets handed over by the service manager: systemd or launchd, one adoption.

systemd passes sockets as fds 3, 4, … and describes them in the environment
(``LISTEN_PID``, ``LISTEN_FDS``, ``LISTEN_FDNAMES``: sd_listen_fds without libsystemd);
launchd hands them out on request, by the key of each in the LaunchAgent's ``Sockets``
dictionary (launchd_sockets.py). The two differ only in how the descriptors are obtained:
both give a list of ``(fd, name)`` that :func:`adopt` turns into sockets. The daemon calls
:func:`inherited_sockets` once at startup and uses a socket by name instead of binding its
own, so an activated and a self-started daemon run one code path.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import MutableMapping, Sequence
from typing import Any

from agent_telemetryd.service.launchd_sockets import LAUNCHD_SOCKETS_VARIABLE, launchd_fds

__all__ = [
    "SOCKET_NAMES",
    "UNIX_SOCKET_FILES",
    "adopt",
    "inherited_sockets",
    "name_for_address",
    "systemd_fds",
]

log = logging.getLogger(__name__)

#: The names the daemon looks sockets up by; also the keys of the LaunchAgent's ``Sockets``.
SOCKET_NAMES = ("ingest", "api", "http")

# sd_listen_fds(3): the first passed fd is always 3, after stdin, stdout and stderr.
LISTEN_FDS_START = 3

_ENV_KEYS = ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES")

#: The socket files in the runtime dir (docs/architecture.md), by the name of each.
UNIX_SOCKET_FILES = {"ingest": "ingest.sock", "api": "api.sock"}
_UNIX_NAMES = {file: name for name, file in UNIX_SOCKET_FILES.items()}


def inherited_sockets(
    environ: MutableMapping[str, str] = os.environ, launchd_library: Any = None
) -> dict[str, socket.socket]:
    """Return the listening sockets the service manager passed to this process, by name.

    systemd's when ``LISTEN_FDS`` is meant for this process, else launchd's when the
    LaunchAgent asked for that (``launchd_library``: where ``launch_activate_socket`` comes
    from; None for the system's). The variables of both are removed from ``environ`` in
    every case, so a child process never believes the sockets are meant for it. Returns
    an empty dict when nothing was passed.
    """
    passed: Sequence[tuple[int, str | None]] = systemd_fds(environ)
    if passed:
        environ.pop(LAUNCHD_SOCKETS_VARIABLE, None)
    else:
        passed = launchd_fds(SOCKET_NAMES, environ, launchd_library)
    return adopt(passed)


def systemd_fds(environ: MutableMapping[str, str] = os.environ) -> list[tuple[int, str | None]]:
    """``(fd, name from LISTEN_FDNAMES or None)`` for each socket systemd passed us."""
    listen_pid = environ.get("LISTEN_PID")
    listen_fds = environ.get("LISTEN_FDS")
    listen_fdnames = environ.get("LISTEN_FDNAMES")
    for key in _ENV_KEYS:
        environ.pop(key, None)

    if listen_pid is None or listen_fds is None:
        return []
    try:
        pid = int(listen_pid)
        count = int(listen_fds)
    except ValueError:
        log.warning("ignoring socket activation: LISTEN_PID/LISTEN_FDS are not numbers")
        return []
    if pid != os.getpid():
        # The variables were inherited from a parent that was activated, not meant for us.
        return []
    if count <= 0:
        return []

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
    return [(LISTEN_FDS_START + index, name) for index, name in enumerate(names)]


def adopt(passed: Sequence[tuple[int, str | None]]) -> dict[str, socket.socket]:
    """The passed listening sockets, keyed by name.

    A name that is one of :data:`SOCKET_NAMES` is taken as given; otherwise the socket's
    address names it (``…/ingest.sock`` → ``ingest``, ``…/api.sock`` → ``api``, a TCP
    socket → ``http``): one ``.socket`` unit gives all its sockets the same name, so the
    address is what tells them apart in the shipped unit. A socket that matches neither,
    or a second one under a name already taken, is kept as ``fd<N>`` so it is at least
    visible in logs. The sockets come back non-blocking and close-on-exec.
    """
    sockets: dict[str, socket.socket] = {}
    for fd, given_name in passed:
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
