"""`doctor`: each check a user would otherwise do by hand, with its verdict and the fix,
against real daemons, sockets, loopback backends and buffer files."""

from __future__ import annotations

import json
import os
import socket
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent_telemetryd.cli import checks, data_checks
from agent_telemetryd.cli.checks import PathFacts
from tests.conftest import DaemonFactory
from tests.daemon_process import DaemonProcess
from tests.fakes.http_backend import FakeHttpBackend
from tests.fakes.upload_helpers import post_events


@pytest.fixture
def backend() -> Iterator[FakeHttpBackend]:
    fake = FakeHttpBackend().start()
    yield fake
    fake.stop()


def doctor(daemon: DaemonProcess) -> tuple[int, dict[str, dict[str, Any]], str]:
    result = daemon.cli("doctor", "--json", check=False)
    report = json.loads(result.stdout)
    return (
        result.returncode,
        {c["name"]: c for c in report["checks"]},
        result.stdout + result.stderr,
    )


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_a_stopped_daemon_a_readable_key_and_an_unreachable_backend_each_get_a_fix(
    daemon_factory: DaemonFactory,
) -> None:
    daemon = daemon_factory(start=False)
    config = daemon.home / "config.toml"
    config.write_text(
        f'[http]\nendpoint = "http://127.0.0.1:{closed_port()}"\napi_key = "sk-doctor-secret"\n'
    )
    config.chmod(0o644)
    code, found, output = doctor(daemon)
    assert code == 1

    assert found["daemon"]["verdict"] == "fail"
    assert found["daemon"]["detail"].startswith("not running")
    assert "agent-telemetry daemon" in found["daemon"]["fix"]

    assert found["config_private"]["verdict"] == "fail"
    assert "holds an API key and others can read it (mode 644)" in found["config_private"]["detail"]
    assert found["config_private"]["fix"] == f"chmod 600 {config}"

    # Such a file is not used, by doctor either: no backend is probed with its key.
    assert found["config"]["verdict"] == "fail"
    assert "an API key in a file others can read (mode 644)" in found["config"]["detail"]
    assert found["config"]["fix"] == f"chmod 600 {config}, then: start the daemon"
    assert found["sender"]["verdict"] == "warn"
    assert found["sender"]["fix"] == f"chmod 600 {config}"
    assert found["buffer"]["verdict"] == "ok" and found["spool"]["verdict"] == "ok"
    assert "sk-doctor-secret" not in output

    config.chmod(0o600)
    _, after, output = doctor(daemon)
    assert after["config_private"]["verdict"] == "ok" and after["config"]["verdict"] == "ok"
    assert after["sender"]["verdict"] == "fail"
    assert "is not reachable: network error (Connection refused)" in after["sender"]["detail"]
    assert "[http] endpoint" in after["sender"]["fix"]
    assert "sk-doctor-secret" not in output


def test_a_healthy_daemon_passes_and_the_spool_backlog_is_counted(
    daemon_factory: DaemonFactory, backend: FakeHttpBackend
) -> None:
    daemon = daemon_factory(
        {
            "AGENT_TELEMETRY_MODE": "upload",
            "TELEMETRY_ENDPOINT": backend.url,
            "TELEMETRY_API_KEY": backend.api_key,
        }
    )
    post_events(daemon, 20)
    spool = daemon.home / "data" / "spool"
    spool.mkdir(mode=0o700, exist_ok=True)
    (spool / "agent-4242.ndjson").write_bytes(b'{"event": "late"}\n' * 10)

    code, found, _ = doctor(daemon)
    verdicts = {name: check["verdict"] for name, check in found.items()}
    for name in ("daemon", "config", "config_private", "sockets", "port", "consent", "sender"):
        assert verdicts[name] == "ok", found[name]
    assert verdicts["buffer"] == "ok" and "quick_check" in found["buffer"]["detail"]
    assert found["sender"]["detail"] == f"http {backend.url}: health answered 200"
    assert any(r.path.endswith("/health") for r in backend.snapshot())
    assert found["port"]["detail"].endswith("answers")
    assert verdicts["spool"] == "warn" and found["spool"]["detail"].startswith(
        "1 file(s), 180 bytes"
    )
    assert code == 0  # warnings only


def test_a_damaged_buffer_fails_with_the_way_out(daemon_factory: DaemonFactory) -> None:
    daemon = daemon_factory({"AGENT_TELEMETRY_RATE_LIMIT": "off"})
    post_events(daemon, 3000)
    assert daemon.stop() == 0
    with daemon.database.open("r+b") as handle:
        size = handle.seek(0, os.SEEK_END)
        handle.seek(size // 2 // 4096 * 4096)
        handle.write(os.urandom(4096 * 4))  # four pages in the middle, header intact
    code, found, _ = doctor(daemon)
    assert code == 1
    assert found["buffer"]["verdict"] == "fail"
    assert "is damaged" in found["buffer"]["detail"]
    assert "restart the daemon: it moves a damaged buffer aside" in found["buffer"]["fix"]


def test_a_port_taken_by_another_program_is_named(daemon_factory: DaemonFactory) -> None:
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        daemon = daemon_factory({"AGENT_TELEMETRY_HTTP_PORT": str(port)}, start=False)
        _, found, _ = doctor(daemon)
    assert found["port"]["verdict"] == "fail"
    assert f"127.0.0.1:{port} is taken by another program" in found["port"]["detail"]
    assert "http_port" in found["port"]["fix"]


def test_with_the_daemon_stopped_a_taken_otlp_port_is_named(daemon_factory: DaemonFactory) -> None:
    with socket.socket() as collector:
        collector.bind(("127.0.0.1", 0))
        collector.listen()
        port = collector.getsockname()[1]
        env = {"AGENT_TELEMETRY_OTLP_HTTP_PORT": str(port), "AGENT_TELEMETRY_OTLP_GRPC_PORT": "0"}
        daemon = daemon_factory(env, start=False)
        _, found, _ = doctor(daemon)
    check = found["otlp_http_port"]
    assert check["verdict"] == "fail"
    assert f"127.0.0.1:{port} is taken by another program" in check["detail"]
    assert "the daemon would start without its OTLP/HTTP listener" in check["detail"]
    assert f"otlp_http_port = {port + 1}" in check["fix"]
    assert "then start the daemon" in check["fix"]
    assert found["otlp_grpc_port"]["verdict"] == "ok"  # 0: any free port, the extra installed
    assert found["port"]["verdict"] == "ok"  # the main port is another matter


# --- the verdicts alone ------------------------------------------------------------------


def test_uploads_on_with_no_backend_is_a_warning_with_the_setting_to_add() -> None:
    check = checks.consent("upload", "command", "set by agent-telemetry", "none")
    assert check.verdict == "warn" and "agent-telemetry reload" in (check.fix or "")
    capped = checks.consent("local", "CI", "CI is set", "http")
    assert capped.verdict == "warn" and "AGENT_TELEMETRY_MODE=upload" in (capped.fix or "")


def test_sockets_that_others_could_use_fail(tmp_path: Path) -> None:
    uid = os.getuid()
    runtime = PathFacts(tmp_path, True, stat.S_IFDIR | 0o755, uid)
    sock = PathFacts(tmp_path / "api.sock", True, stat.S_IFSOCK | 0o666, uid)
    check = checks.sockets(runtime, [sock], uid, True)
    assert check.verdict == "fail"
    assert "mode 755, not 700" in check.detail and "mode 666, not 600" in check.detail


def test_tcp_peer_protection_is_named() -> None:
    assert checks.tcp_peers("uid", True).verdict == "ok"
    assert checks.tcp_peers("off", True).verdict == "warn"
    assert checks.tcp_peers(None, False).detail.startswith("no TCP listener")


def test_a_clock_that_went_back_or_differs_from_the_backend_is_said() -> None:
    now = 1_800_000_000_000
    assert data_checks.clock(now, now + 3_600_000, None).verdict == "warn"
    assert "behind" in data_checks.clock(now, None, 900.0).detail
    assert data_checks.clock(now, now - 1000, 2.0).verdict == "ok"
    assert data_checks.clock(1_600_000_000_000, None, None).verdict == "fail"


def test_a_failed_http_socket_unit_is_named_with_the_setting_that_moves_the_port() -> None:
    """The port's own unit failing (its port taken) leaves the service installed and
    enabled; doctor says which unit, that agents on ingest.sock are not affected, and that
    the port moves with http_port and `service install` (which writes it into the unit)."""
    units = [
        {"name": "agent-telemetry.socket", "enabled": True, "state": "active/listening"},
        {"name": "agent-telemetry-http.socket", "enabled": True, "state": "failed/failed"},
        {"name": "agent-telemetry.service", "enabled": True, "state": "active/running"},
        {"name": "agent-telemetry-flush.timer", "enabled": True, "state": "active/waiting"},
    ]
    facts = {"manager": True, "installed": True, "enabled": True, "outdated": [], "units": units}
    check = checks.service(facts)
    assert check.verdict == "warn"
    assert "agent-telemetry-http.socket failed" in check.detail
    assert "ingest.sock are not affected" in check.detail
    assert "set http_port in the config" in (check.fix or "")
    assert "agent-telemetry service install" in (check.fix or "")

    units[1]["state"] = "active/listening"
    assert checks.service(facts).verdict == "ok"
