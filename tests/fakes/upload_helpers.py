"""Helpers for upload tests: feed the real daemon events, start one aimed at a fake."""

from __future__ import annotations

import json
import urllib.request
import uuid as uuid_module
from collections.abc import Callable
from typing import Any

from tests.daemon_process import DaemonProcess

# Quick retries in tests; the default base is a second.
FAST = {"AGENT_TELEMETRY_RATE_LIMIT": "off", "AGENT_TELEMETRY_RETRY_BASE": "0.05"}


def posthog_env(url: str, **extra: str) -> dict[str, str]:
    return {
        **FAST,
        "AGENT_TELEMETRY_SENDER": "posthog",
        "POSTHOG_API_KEY": "phc_test_key",
        "POSTHOG_HOST": url,
        **extra,
    }


def post_events(
    daemon: DaemonProcess, count: int, *, name: str = "agent.run.completed", agent: str = "tester"
) -> list[str]:
    """POST `count` events over the loopback HTTP ingest; returns their uuids (committed)."""
    uuids = [str(uuid_module.uuid4()) for _ in range(count)]
    url = _ingest_url(daemon)
    for start in range(0, count, 500):
        events = [
            {
                "event": name,
                "uuid": value,
                "agent": agent,
                "properties": {"n": start + i, "duration_ms": 5},
            }
            for i, value in enumerate(uuids[start : start + 500])
        ]
        request = urllib.request.Request(
            url,
            data=json.dumps({"events": events}).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            answer = json.loads(response.read())
        assert answer["accepted"] == len(events), answer
    return uuids


_URLS: dict[tuple[int, int], str] = {}


def _ingest_url(daemon: DaemonProcess) -> str:
    # One `status` call per daemon run, not per batch of events: each CLI call costs.
    assert daemon.proc is not None
    key = (id(daemon), daemon.proc.pid)
    if key not in _URLS:
        _URLS[key] = daemon.http_url() + "/v1/events"
    return _URLS[key]


def flush_json(daemon: DaemonProcess, check: bool = True) -> dict[str, Any]:
    result = daemon.cli("flush", "--json", check=check)
    return dict(json.loads(result.stdout), exit_code=result.returncode)


def upload_states(daemon: DaemonProcess) -> dict[str, str]:
    return {row["uuid"]: row["upload"] for row in daemon.export()}


Factory = Callable[..., DaemonProcess]
