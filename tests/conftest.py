"""Fixtures shared by the whole suite: the real daemon as a subprocess."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.daemon_process import DaemonProcess, clean_environment, make_home

DaemonFactory = Callable[..., DaemonProcess]


@pytest.fixture
def daemon_factory() -> Iterator[DaemonFactory]:
    """Make daemons (started unless start=False) in fresh homes; all are stopped afterwards."""
    made: list[DaemonProcess] = []

    def factory(
        env: dict[str, str] | None = None, *, start: bool = True, home: Path | None = None
    ) -> DaemonProcess:
        home = home or make_home()
        process = DaemonProcess(home, clean_environment(home, env))
        made.append(process)
        return process.start() if start else process

    yield factory
    for process in made:
        process.cleanup()


@pytest.fixture
def daemon(daemon_factory: DaemonFactory) -> DaemonProcess:
    """A running daemon in the default (local) mode with rate limits off."""
    return daemon_factory({"AGENT_TELEMETRY_RATE_LIMIT": "off"})
