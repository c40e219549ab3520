"""A daemon loads only what its configuration uses, and loads the rest when it is needed.

Read from the running daemon (`GET /v1/debug/modules` on api.sock): its modules, and the
aiohttp client sessions alive in it. `import aiohttp` loads aiohttp's client modules by
itself, so those say nothing; the markers are the sender modules, an open client session,
APScheduler, the dashboard's modules and the OTLP decoders.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from agent_telemetryd.cli.api_client import ApiClient
from agent_telemetryd.config import load_config
from agent_telemetryd.senders.factory import DeferredSender, SharedSession, build_sender
from tests.daemon_process import DaemonProcess
from tests.fakes.http_backend import FakeHttpBackend
from tests.test_service_daemon import send_line

SENDER_MODULES = {
    "agent_telemetryd.senders.http",
    "agent_telemetryd.senders.posthog",
    "agent_telemetryd.senders.file",
    "agent_telemetryd.senders.transport",
}
DASHBOARD_MODULES = {
    "agent_telemetryd.dashboard.routes",
    "agent_telemetryd.dashboard.views",
    "agent_telemetryd.dashboard.page",
}


def eventually(predicate: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def loaded(daemon: DaemonProcess) -> dict[str, Any]:
    answer = ApiClient(daemon.api_socket).json("GET", "/v1/debug/modules?under=agent_telemetryd")
    return {
        "top": set(answer["modules"]),
        "own": set(answer["under"]),
        "client_sessions": answer["client_sessions"],
    }


def test_a_local_daemon_without_a_sender_loads_no_sender_scheduler_dashboard_or_otlp(
    daemon: DaemonProcess,
) -> None:
    found = loaded(daemon)
    assert found["client_sessions"] == 0
    assert not SENDER_MODULES & found["own"]
    assert "agent_telemetryd.upload.scheduler" not in found["own"]
    assert not {"apscheduler", "tzlocal"} & found["top"]
    assert not DASHBOARD_MODULES & found["own"]
    assert not {"google", "opentelemetry"} & found["top"]
    assert "agent_telemetryd.upload.part" in found["own"]  # the part itself is there

    # Asked for, each comes: the dashboard on its first request, OTLP on its first export.
    api = ApiClient(daemon.api_socket)
    assert api.json("GET", "/dashboard/api/summary?since=24h")["totals"]["events"] == 0
    spans = {"resourceSpans": []}
    assert api.json("POST", "/v1/traces", spans) == {}
    found = loaded(daemon)
    assert found["own"] >= DASHBOARD_MODULES
    assert {"google", "opentelemetry"} <= found["top"]
    assert not SENDER_MODULES & found["own"]
    assert found["client_sessions"] == 0


def test_a_sender_and_the_scheduler_load_when_upload_starts_and_uploads_work(
    daemon_factory: Any,
) -> None:
    backend = FakeHttpBackend(api_key="lazy-key").start()
    try:
        daemon = daemon_factory(
            {"TELEMETRY_ENDPOINT": backend.url, "TELEMETRY_API_KEY": "lazy-key"}
        )
        # A sender is configured, but mode local sends nothing: nothing of it is loaded.
        found = loaded(daemon)
        assert daemon.status()["sender"] == "http"
        assert not SENDER_MODULES & found["own"] and found["client_sessions"] == 0
        assert "apscheduler" not in found["top"]
        assert daemon.status()["upload"]["backend"] == f"http {backend.url.rstrip('/')}"

        daemon.cli("enable")
        found = loaded(daemon)
        assert "apscheduler" in found["top"]
        assert daemon.status()["next_upload"] is not None

        for name in ("lazy.one", "lazy.two"):
            send_line(daemon.ingest_socket, {"event": name})
        eventually(lambda: daemon.status()["buffer"]["pending_upload"] == 2)
        report = json.loads(daemon.cli("flush", "--json").stdout)
        assert report["events_sent"] == 2
        assert sorted(event["event"] for event in backend.stored.values()) == [
            "lazy.one",
            "lazy.two",
        ]
        found = loaded(daemon)
        assert {"agent_telemetryd.senders.http", "agent_telemetryd.senders.transport"} <= found[
            "own"
        ]
        assert found["client_sessions"] == 1
    finally:
        backend.stop()


def test_the_dashboard_paths_registered_up_front_are_the_ones_it_serves() -> None:
    from agent_telemetryd import dashboard
    from agent_telemetryd.dashboard.routes import Dashboard, routes

    board = Dashboard(None)  # type: ignore[arg-type]  # routes() only keeps it
    assert {r.path for r in routes(board, token=True)} == set(dashboard.PATHS)
    assert {r.path for r in routes(board, token=False)} == set(
        dashboard.PATHS + dashboard.API_SOCKET_ONLY
    )


@pytest.mark.parametrize(
    "env",
    [
        {"AGENT_TELEMETRY_SENDER": "none"},
        {"AGENT_TELEMETRY_SENDER": "file"},
        {"TELEMETRY_ENDPOINT": "http://127.0.0.1:9/base/"},
        {"POSTHOG_API_KEY": "phc_x", "POSTHOG_HOST": "https://eu.i.posthog.com/"},
    ],
)
async def test_a_deferred_sender_says_what_the_built_one_says_before_it_is_built(
    env: dict[str, str], tmp_path: Path
) -> None:
    config = load_config({**env, "AGENT_TELEMETRY_HOME": str(tmp_path)})
    session = SharedSession()
    deferred = DeferredSender(config, session)
    said = (deferred.name, deferred.sends, deferred.backend)
    assert not deferred.built and not session.opened
    built = build_sender(config, session)
    assert (built.name, built.sends, built.backend) == said
    assert not session.opened  # a sender's first request opens it
    await session.close()
