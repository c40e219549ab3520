"""Programs the tests drive that are not Python packages (a browser, Node, systemd's
tools, a C compiler). A missing one fails the test that needs it and names what to
install: skipped, the test would hide that what it checks never ran. `.ci/run` installs
them all."""

from __future__ import annotations

import shutil

import pytest


def required_tool(debian_package: str, *names: str) -> str:
    """The path of the first of `names` (one program's other names) that is installed;
    fails the calling test when none is."""
    for name in names:
        path = shutil.which(name)
        if path is not None:
            return path
    pytest.fail(
        f"{names[0]} is not installed (Debian: apt-get install -y {debian_package});"
        " .ci/run installs what the tests need"
    )
