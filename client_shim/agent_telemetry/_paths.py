"""Where the daemon's sockets live: one rule, shared by the shim and the daemon (DESIGN §4)."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path

INGEST_SOCKET_NAME = "ingest.sock"


def runtime_dir(environ: Mapping[str, str] | None = None, platform: str | None = None) -> Path:
    """The 0700 directory that holds the daemon's sockets and lock file.

    `AGENT_TELEMETRY_HOME=H` gives `H/run`; else `$XDG_RUNTIME_DIR/agent-telemetry`; else
    `$TMPDIR/agent-telemetry` on macOS; else `/tmp/agent-telemetry-<uid>`.
    """
    env = os.environ if environ is None else environ
    home = env.get("AGENT_TELEMETRY_HOME")
    if home:
        return Path(home).expanduser().absolute() / "run"
    xdg = env.get("XDG_RUNTIME_DIR")
    if xdg:
        return Path(xdg) / "agent-telemetry"
    if (platform or sys.platform) == "darwin":
        # macOS gives every user a private $TMPDIR; /tmp there is shared by all users.
        return Path(env.get("TMPDIR") or "/tmp") / "agent-telemetry"
    # The uid in the name keeps users apart in a shared /tmp; the daemon makes it 0700.
    return Path("/tmp") / f"agent-telemetry-{os.getuid()}"


def ingest_socket_path(
    environ: Mapping[str, str] | None = None, platform: str | None = None
) -> Path:
    """The NDJSON ingest socket the shims write to."""
    return runtime_dir(environ, platform) / INGEST_SOCKET_NAME
