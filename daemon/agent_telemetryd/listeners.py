"""The daemon's listening sockets: taken from systemd or launchd when they hold them,
else bound here.

Either way the rest of the daemon gets plain listening sockets, so socket activation and
a self-started daemon share one code path.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import socket
import sys
from dataclasses import dataclass, field
from pathlib import Path

from agent_telemetryd.config import Config
from agent_telemetryd.config_values import is_loopback_ip
from agent_telemetryd.paths import ensure_private_dir
from agent_telemetryd.service.activation import SOCKET_NAMES, inherited_sockets
from agent_telemetryd.socket_table import listening_at

log = logging.getLogger(__name__)

# The size of a Unix socket address's path field, its terminating NUL included.
_SUN_PATH_MAX = 104 if sys.platform == "darwin" else 108


class ListenError(RuntimeError):
    """A socket could not be bound; the message says which and why."""


class PortTakenError(ListenError):
    """The loopback HTTP port is held by another program."""


@dataclass
class Listeners:
    ingest: socket.socket
    api: socket.socket
    http: socket.socket | None
    owned_paths: list[Path] = field(default_factory=list)  # files to remove at shutdown
    # The service manager passed ingest.sock: it holds the socket while the daemon is not running.
    socket_activated: bool = False
    # Why there is no HTTP listener although a port is configured (it was taken).
    http_unavailable: str | None = None
    # The configured (fixed) HTTP port was bound here, not passed by the service manager
    # (under systemd: its socket unit for the port failed, or was turned off).
    http_bound_here: bool = False

    @property
    def http_url(self) -> str | None:
        if self.http is None:
            return None
        host, port = self.http.getsockname()[:2]
        # An IPv6 address in a URL takes brackets; the Origin allowlist is built from this.
        return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"

    def owns(self, path: Path) -> bool:
        """True for a socket file this daemon made (not one the service manager passed it)."""
        return path in self.owned_paths

    def close(self) -> None:
        for sock in (self.ingest, self.api, self.http):
            if sock is not None:
                sock.close()
        _remove_files(self.owned_paths)


def open_listeners(config: Config) -> Listeners:
    """Bind (or adopt) ingest.sock, api.sock and the loopback HTTP port. Call under the lock.

    All or nothing: when one cannot be bound, the ones already bound are closed and their
    socket files removed before the error goes up.
    """
    inherited = inherited_sockets()
    paths = config.paths
    owned: list[Path] = []
    with contextlib.ExitStack() as undo:
        for sock in inherited.values():
            undo.callback(sock.close)
        undo.callback(_remove_files, owned)
        _refuse_non_loopback(inherited)
        _drop_misplaced(inherited, {"ingest": paths.ingest_socket, "api": paths.api_socket})
        ensure_private_dir(paths.runtime_dir)
        ingest = inherited.get("ingest") or _bind_unix(paths.ingest_socket, owned, undo)
        api = inherited.get("api") or _bind_unix(paths.api_socket, owned, undo)
        http = inherited.get("http")
        unavailable = None
        bound_here = False
        if http is None and config.http_port is not None:
            # Started by hand, or by a service manager that holds no TCP socket for us
            # (systemd's agent-telemetry-http.socket could not bind, or was turned off).
            try:
                http = _bind_tcp(config.http_host, config.http_port)
                bound_here = config.http_port != 0
            except PortTakenError as error:
                # Any local user can take a loopback port first (on a shared machine, another
                # user's daemon holds 7468): that must not also stop the sockets, which the
                # shims use. status and doctor name what is missing.
                unavailable = str(error)
                log.warning("no HTTP listener: %s", unavailable)
        undo.pop_all()
    return Listeners(
        ingest,
        api,
        http,
        owned,
        socket_activated="ingest" in inherited,
        http_unavailable=unavailable,
        http_bound_here=bound_here,
    )


def _remove_files(paths: list[Path]) -> None:
    for path in paths:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def _refuse_non_loopback(inherited: dict[str, socket.socket]) -> None:
    """A TCP socket from the service manager must be bound to loopback, as one bound here is.

    The .socket unit or the LaunchAgent, not the daemon, chose its address: a drop-in for
    agent-telemetry-http.socket with `ListenStream=7468` (or a `Sockets` entry without
    `SockNodeName`) listens on every interface, and serving it would take events and serve
    the dashboard to the network.
    Then the daemon does not start, and says which address to change.
    """
    for name, sock in inherited.items():
        if name not in SOCKET_NAMES or sock.family not in (socket.AF_INET, socket.AF_INET6):
            continue  # a Unix socket, or an fd<N> the daemon does not serve
        host, port = sock.getsockname()[:2]
        if is_loopback_ip(host):
            continue
        shown = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        raise ListenError(
            f"the {name} socket passed by the service manager listens on {shown}, not on"
            f" loopback; refusing to serve it (set ListenStream=127.0.0.1:{port} in"
            " agent-telemetry-http.socket, or SockNodeName 127.0.0.1 in the LaunchAgent's"
            " Sockets)"
        )


def _drop_misplaced(inherited: dict[str, socket.socket], expected: dict[str, Path]) -> None:
    """Give back a passed Unix socket that is not where the shims and the CLI will look.

    The service manager's file and the daemon's runtime folder can part: a LaunchAgent
    written from another shell's $TMPDIR, a folder that turned out not to be the user's
    own (the daemon and the shims then use DATA/run). Serving that socket would take
    nothing; binding the expected path instead keeps events flowing (without idle exit).
    """
    for name, path in expected.items():
        sock = inherited.get(name)
        if sock is None:
            continue
        address = sock.getsockname()
        if isinstance(address, bytes):
            address = address.decode(errors="replace")
        if _same_file(str(address), path):
            continue
        log.warning(
            "the %s socket passed by the service manager is %s, not %s; binding %s here",
            name,
            address,
            path,
            path.name,
        )
        sock.close()
        del inherited[name]


def _same_file(address: str, path: Path) -> bool:
    if address == str(path):
        return True
    try:
        return os.path.samefile(address, path)
    except (OSError, ValueError):
        return False


def _bind_unix(path: Path, owned: list[Path], undo: contextlib.ExitStack) -> socket.socket:
    # Only called while holding the runtime folder's lock, so no other daemon made a socket
    # file here. One nobody listens on is stale: the daemon that made it is gone (killed,
    # crashed); remove it and bind afresh. One that is listened on belongs to the socket
    # unit, waiting to start the service's daemon: taking it would leave the unit holding a
    # socket no agent can reach once this daemon stops.
    if listening_at(path):
        raise ListenError(
            f"{path} is held by the service manager's socket unit (agent-telemetry.socket):"
            " start the daemon through it (systemctl --user start agent-telemetry.service),"
            " or stop the socket unit first (systemctl --user stop agent-telemetry.socket)"
            " to run it by hand"
        )
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    undo.callback(sock.close)
    old_umask = os.umask(0o177)  # the file is born 0600: no window where others could connect
    try:
        sock.bind(str(path))
    except OSError as error:
        sock.close()
        raise ListenError(f"cannot bind {path}: {_bind_reason(error, path)}") from None
    finally:
        os.umask(old_umask)
    os.chmod(path, 0o600)
    sock.listen(512)
    sock.setblocking(False)
    owned.append(path)
    return sock


def _bind_reason(error: OSError, path: Path) -> str:
    """Why a Unix socket could not be bound, in words a user can act on."""
    if error.strerror:
        return error.strerror
    # Python refuses an address longer than sun_path (108 bytes on Linux, 104 on macOS)
    # itself, with no errno: say so, and which setting makes the path shorter.
    size = len(os.fsencode(path))
    if size >= _SUN_PATH_MAX:
        return (
            f"the path is {size} bytes, too long for a Unix socket (at most"
            f" {_SUN_PATH_MAX - 1}); set AGENT_TELEMETRY_HOME to a shorter folder"
        )
    return str(error)


def _bind_tcp(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as error:
        sock.close()
        hint = " (set AGENT_TELEMETRY_HTTP_PORT to another port, 0, or off)"
        kind = PortTakenError if error.errno == errno.EADDRINUSE else ListenError
        raise kind(f"cannot listen on {host}:{port}: {error.strerror}{hint}") from None
    sock.listen(512)
    sock.setblocking(False)
    return sock
