"""The real daemon as a subprocess in a temporary AGENT_TELEMETRY_HOME, for tests and benches."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent_telemetryd.cli.api_client import ApiClient, ApiError, DaemonUnavailableError

BIN = Path(sys.executable).parent
CLI = str(BIN / "agent-telemetry")

# Settings of the machine running the tests must not leak into the daemon under test.
_SCRUBBED_PREFIXES = ("AGENT_TELEMETRY_", "POSTHOG_", "TELEMETRY_")
_SCRUBBED = {"CI", "DO_NOT_TRACK", "NOTIFY_SOCKET", "LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"}


def clean_environment(home: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in _SCRUBBED and not key.startswith(_SCRUBBED_PREFIXES)
    }
    env["AGENT_TELEMETRY_HOME"] = str(home)
    env["AGENT_TELEMETRY_HTTP_PORT"] = "0"
    env.update(extra or {})
    return env


def make_home() -> Path:
    # Short: a Unix socket path must fit in 107 bytes.
    return Path(tempfile.mkdtemp(prefix="at-", dir="/tmp"))


@dataclass
class DaemonProcess:
    home: Path
    env: dict[str, str]
    proc: subprocess.Popen[bytes] | None = None
    # Runs in the daemon's process before it starts (e.g. to set its resource limits).
    preexec_fn: Callable[[], None] | None = None
    log_path: Path = field(init=False)
    # The `agent-telemetry` executable to run: this venv's, or e.g. one installed from a wheel.
    program: str = CLI
    _notify: socket.socket | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.log_path = self.home / "daemon.log"

    @property
    def ingest_socket(self) -> Path:
        return self.home / "run" / "ingest.sock"

    @property
    def api_socket(self) -> Path:
        return self.home / "run" / "api.sock"

    @property
    def database(self) -> Path:
        return self.home / "data" / "buffer.sqlite3"

    def start(
        self, *, wait: bool = True, timeout: float = 15.0, ready: str = "status"
    ) -> DaemonProcess:
        """Start the daemon; with `wait`, return once it is ready, as `ready` tells:
        "status" asks api.sock for the status, as `status --json` does (which has the
        daemon load its HTTP side), "notify" waits for READY=1 on a NOTIFY_SOCKET, as
        systemd does, asking the daemon nothing."""
        notify = self._notify_socket() if wait and ready == "notify" else None
        env = self.env if notify is None else {**self.env, "NOTIFY_SOCKET": notify.getsockname()}
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [self.program, "daemon"],
            env=env,
            stdout=log,
            stderr=log,
            stdin=subprocess.DEVNULL,
            preexec_fn=self.preexec_fn,
        )
        log.close()
        if notify is not None:
            # Kept open while the daemon runs: it says STOPPING=1 there too.
            self._notify = notify
            self._wait_notified(notify, timeout)
        elif wait:
            self.wait_ready(timeout)
        return self

    def _close_notify_socket(self) -> None:
        if self._notify is not None:
            self._notify.close()
            self._notify = None

    def _notify_socket(self) -> socket.socket:
        path = self.home / "notify.sock"
        path.unlink(missing_ok=True)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(str(path))
        sock.settimeout(0.05)
        return sock

    def _wait_notified(self, sock: socket.socket, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            try:
                if "READY=1" in sock.recv(4096).decode().split("\n"):
                    return
            except TimeoutError:
                if self.proc.poll() is not None:
                    raise RuntimeError(
                        f"daemon exited with {self.proc.returncode}:\n{self.log()}"
                    ) from None
        raise RuntimeError(f"daemon sent no READY=1 within {timeout}s:\n{self.log()}")

    def wait_ready(self, timeout: float = 15.0) -> None:
        """Until the daemon says it runs, asked on api.sock as `status --json` asks it; in
        this process, since a CLI process for each poll costs ~0.3 s of CPU a start."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"daemon exited with {self.proc.returncode}:\n{self.log()}")
            if self.api_socket.exists():
                with contextlib.suppress(ApiError, DaemonUnavailableError):
                    if self.api_status(max(deadline - time.monotonic(), 0.1))["running"]:
                        return
            time.sleep(0.05)
        raise RuntimeError(f"daemon not ready after {timeout}s:\n{self.log()}")

    def cli(
        self, *args: str, check: bool = True, input: bytes | None = None, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [self.program, *args],
            env=self.env,
            capture_output=True,
            text=True,
            input=input.decode() if input is not None else None,
            timeout=timeout,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"agent-telemetry {' '.join(args)} exited {result.returncode}:\n"
                f"{result.stdout}\n{result.stderr}"
            )
        return result

    def status(self) -> dict[str, Any]:
        return json.loads(self.cli("status", "--json").stdout)

    def api_status(self, timeout: float = 30.0) -> dict[str, Any]:
        """The status as the daemon gives it on api.sock (what `status --json` prints when
        it runs), asked from this process: plumbing for the harness, not the command."""
        return dict(ApiClient(self.api_socket, timeout).json("GET", "/v1/status"))

    def http_url(self) -> str:
        """The URL the daemon's HTTP listener took."""
        url = self.api_status()["paths"]["http"]
        assert url, "the daemon has no HTTP listener"
        return str(url)

    def export(self) -> list[dict[str, Any]]:
        out = self.cli("export", "--format", "ndjson").stdout
        # Split on newlines only: splitlines() also breaks at U+2028 and the like, which
        # JSON strings may hold as they are.
        return [json.loads(line) for line in out.split("\n") if line.strip()]

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def cleanup(self) -> None:
        self.kill()
        self._close_notify_socket()
        shutil.rmtree(self.home, ignore_errors=True)
