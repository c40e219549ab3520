"""The upload rate limit on the real daemon: a busy run waits and all of it is uploaded
over later windows; only a runaway source past its backlog cap is kept local, counted,
and said so by `status`, `preview`, `flush` and the dashboard, across a restart too."""

from __future__ import annotations

import json
import sqlite3
import urllib.parse
from collections.abc import Iterator

import pytest

from tests.conftest import DaemonFactory
from tests.daemon_process import DaemonProcess
from tests.fakes.backend import events_of
from tests.fakes.http_backend import FakeHttpBackend
from tests.fakes.upload_helpers import flush_json, post_events
from tests.test_dashboard_http import get, token_of
from tests.test_ratelimit import most_in_any_window


@pytest.fixture
def backend() -> Iterator[FakeHttpBackend]:
    fake = FakeHttpBackend().start()
    yield fake
    fake.stop()


def write_config(daemon: DaemonProcess, text: str) -> None:
    config = daemon.home / "config.toml"
    config.write_text(text)
    config.chmod(0o600)


def uploading_daemon(
    daemon_factory: DaemonFactory, backend: FakeHttpBackend, config: str
) -> DaemonProcess:
    """A daemon in mode upload to `backend`, started with `config` as its config file."""
    daemon = daemon_factory(
        {
            "AGENT_TELEMETRY_MODE": "upload",
            "TELEMETRY_ENDPOINT": backend.url,
            "TELEMETRY_API_KEY": backend.api_key,
        },
        start=False,
    )
    write_config(daemon, config)
    daemon.start()
    return daemon


def stamps(daemon: DaemonProcess) -> list[tuple[int, int | None]]:
    """(received_ms, eligible_ms) of every stored event, in arrival order."""
    conn = sqlite3.connect(f"file:{daemon.database}?mode=ro", uri=True)
    try:
        rows = conn.execute("SELECT received_ms, eligible_ms FROM events ORDER BY id")
        return [(int(received), eligible) for received, eligible in rows]
    finally:
        conn.close()


def test_a_busy_minute_reaches_the_backend_over_later_windows(
    daemon_factory: DaemonFactory, backend: FakeHttpBackend
) -> None:
    """180 events at once from one source, under rules shaped like the defaults (a short
    and a long window, here 30/s and 90/4s so the test takes seconds, not minutes)."""
    daemon = daemon_factory(
        {
            "AGENT_TELEMETRY_MODE": "upload",
            "TELEMETRY_ENDPOINT": backend.url,
            "TELEMETRY_API_KEY": backend.api_key,
            "AGENT_TELEMETRY_UPLOAD_INTERVAL": "1s",
            "AGENT_TELEMETRY_RETRY_BASE": "0.05",
        },
        start=False,
    )
    write_config(daemon, 'rate_limit = "30/s,90/4s"\n')
    daemon.start()
    uuids = post_events(daemon, 180, agent="planner")

    # The limit stamped when each may go: 30 at once, the rest over later windows, oldest
    # first, never more than a rule allows.
    eligible = [e if e is not None else r for r, e in stamps(daemon)]
    assert sum(1 for _, e in stamps(daemon) if e is None) == 30
    assert eligible == sorted(eligible)
    assert most_in_any_window(eligible, 1000) == 30
    assert most_in_any_window(eligible, 4000) == 90

    # The schedule (every second) sends what has become eligible; all of it arrives.
    backend.wait_for(lambda: len(backend.stored) == 180, timeout=90)
    status = daemon.status()
    assert status["buffer"]["rate_limited"] == 0 and status["buffer"]["sent"] == 180
    assert status["rate_limit"]["events"] == 0 and status["rate_limit"]["why"] is None
    arrived = [event["uuid"] for event in events_of(backend.snapshot(), "events")]
    assert arrived == uuids  # oldest first, each once
    last = flush_json(daemon)
    assert last["exit_code"] == 0 and last["waiting"]["events"] == 0


def test_a_runaway_source_past_its_backlog_is_kept_local_and_counted(
    daemon_factory: DaemonFactory, backend: FakeHttpBackend
) -> None:
    daemon = uploading_daemon(
        daemon_factory, backend, 'rate_limit = "5/min"\nrate_limit_backlog = 20\n'
    )
    post_events(daemon, 50, agent="runaway")
    post_events(daemon, 3, agent="polite")

    status = daemon.status()
    limit = status["rate_limit"]
    assert status["buffer"]["pending_upload"] == 5 + 20 + 3
    assert (limit["events"], limit["by_source"]) == (20, {"runaway": 20})
    assert (limit["rate_limited"], limit["rate_limited_by_source"]) == (25, {"runaway": 25})
    assert status["buffer"]["rate_limited"] == 25
    assert status["upload"]["rate_limited_by_source"] == {"runaway": 25}
    assert limit["why"].startswith(
        "20 events wait for the upload rate limit (5/min per source, 50/min for all sources"
        " together)"
    )
    text = daemon.cli("status").stdout
    assert "waiting:      runaway 20" in text and "rate limited: runaway 25" in text

    preview = json.loads(daemon.cli("preview", "--json").stdout)
    assert preview["pending"] == 28 and preview["waiting"]["events"] == 20
    assert sum(len(r["body"]["events"]) for r in preview["requests"]) == 8

    report = flush_json(daemon)
    assert (report["events_sent"], report["waiting"]["events"]) == (8, 20)
    assert len(backend.stored) == 8
    assert "Waiting: 20 events wait for the upload rate limit" in daemon.cli("flush").stdout

    token = token_of(daemon)
    _, summary = get(daemon, f"/dashboard/api/summary?token={urllib.parse.quote(token)}")
    assert summary["health"]["rate_limit"]["events"] == 20

    # A restart reads the limit back from the buffer: the backlog is still full.
    assert daemon.stop() == 0
    daemon.start()
    post_events(daemon, 1, agent="runaway")
    after = daemon.status()
    assert after["rate_limit"]["rate_limited_by_source"] == {"runaway": 26}
    assert after["counters"]["received"] == 54
