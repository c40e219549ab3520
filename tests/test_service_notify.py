"""sd_notify: what SdNotifier puts on a NOTIFY_SOCKET, read back from a real datagram socket."""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent_telemetryd.service.notify import SdNotifier


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    """A bound datagram socket standing in for systemd's notify socket, and its NOTIFY_SOCKET."""
    path = tmp_path / "notify"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(5)
    yield sock, str(path)
    sock.close()


def receive(sock: socket.socket) -> str:
    return sock.recv(4096).decode()


def test_ready_status_stopping(notify_socket: tuple[socket.socket, str]) -> None:
    sock, address = notify_socket
    notifier = SdNotifier({"NOTIFY_SOCKET": address})
    assert notifier.enabled
    assert notifier.ready()
    assert receive(sock) == "READY=1"
    assert notifier.status("draining\n3 events left")
    # A newline would end STATUS= early and start a bogus assignment.
    assert receive(sock) == "STATUS=draining 3 events left"
    assert notifier.stopping()
    assert receive(sock) == "STOPPING=1"
    notifier.close()


def test_abstract_namespace_address() -> None:
    """NOTIFY_SOCKET=@name is the Linux abstract namespace (what systemd uses in containers)."""
    name = f"agent-telemetry-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(5)
        assert SdNotifier({"NOTIFY_SOCKET": "@" + name}).ready()
        assert receive(sock) == "READY=1"


def test_without_notify_socket_everything_is_a_no_op() -> None:
    notifier = SdNotifier({})
    assert not notifier.enabled
    assert notifier.ready() is False
    assert notifier.stopping() is False
    assert notifier.watchdog_interval() is None


def test_a_vanished_manager_does_not_raise(tmp_path: Path) -> None:
    notifier = SdNotifier({"NOTIFY_SOCKET": str(tmp_path / "gone")})
    assert notifier.ready() is False


def test_unsupported_address_is_ignored() -> None:
    assert not SdNotifier({"NOTIFY_SOCKET": "vsock:2:1234"}).enabled


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"WATCHDOG_USEC": "30000000"}, 30.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}, 30.0),
        # Set up for another process (our parent): not ours to pet.
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}, None),
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
        ({}, None),
    ],
)
def test_watchdog_interval(env: dict[str, str], expected: float | None) -> None:
    assert SdNotifier({"NOTIFY_SOCKET": "/run/x", **env}).watchdog_interval() == expected


def test_watchdog_needs_a_notify_socket() -> None:
    assert SdNotifier({"WATCHDOG_USEC": "30000000"}).watchdog_interval() is None


async def test_watchdog_loop_pets_at_half_the_interval(
    notify_socket: tuple[socket.socket, str],
) -> None:
    sock, address = notify_socket
    sock.setblocking(False)
    # WatchdogSec=2s: a pet at once, then one a second, well inside each deadline.
    notifier = SdNotifier({"NOTIFY_SOCKET": address, "WATCHDOG_USEC": "2000000"})
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    task = asyncio.create_task(notifier.watchdog_loop(stop))
    first = await asyncio.wait_for(loop.sock_recv(sock, 4096), timeout=10)
    # Long enough: the watchdog task runs on this same loop, which is idle meanwhile, so a
    # loop that did not wait between pets would have sent again on its very next turn.
    await asyncio.sleep(0.05)
    with pytest.raises(BlockingIOError):  # no second pet hard on the first: no busy loop
        sock.recv(4096)
    second = await asyncio.wait_for(loop.sock_recv(sock, 4096), timeout=10)
    stop.set()
    await asyncio.wait_for(task, timeout=2)  # setting stop ends the loop without a last wait
    assert [first, second] == [b"WATCHDOG=1"] * 2


async def test_watchdog_loop_returns_at_once_when_not_configured(
    notify_socket: tuple[socket.socket, str],
) -> None:
    """No WatchdogSec: no task keeps waking the idle daemon; the coroutine just ends."""
    _, address = notify_socket
    never_set = asyncio.Event()
    await asyncio.wait_for(SdNotifier({"NOTIFY_SOCKET": address}).watchdog_loop(never_set), 0.5)
    await asyncio.wait_for(SdNotifier({}).watchdog_loop(never_set), 0.5)
