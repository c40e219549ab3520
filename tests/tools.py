"""Programs the tests drive that are not Python packages (a browser, Node, systemd's
tools). A missing one fails the test that needs it and names what to install: skipped,
the test would hide that what it checks never ran. `.ci/run` installs them all."""

from __future__ import annotations

import shutil

import pytest


def required_tool(name: str, debian_package: str) -> str:
    """The path of the program `name`; fails the calling test when it is not installed."""
    path = shutil.which(name)
    if path is None:
        pytest.fail(
            f"{name} is not installed (Debian: apt-get install -y {debian_package});"
            " .ci/run installs what the tests need"
        )
    return path
