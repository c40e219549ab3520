"""Hundreds of small agents, each well within its own upload rate rule, are held by the
limit on all sources together: what waits or is kept local for that reason is explained
by that limit, which the user never wrote, in `status`, `preview` and `flush`."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from tests.conftest import DaemonFactory
from tests.fakes.http_backend import FakeHttpBackend
from tests.fakes.upload_helpers import flush_json
from tests.test_daemon_ingest import post_events
from tests.test_rate_shaping import uploading_daemon


@pytest.fixture
def backend() -> Iterator[FakeHttpBackend]:
    fake = FakeHttpBackend().start()
    yield fake
    fake.stop()


def test_many_small_sources_are_told_the_all_sources_limit_holds_them(
    daemon_factory: DaemonFactory, backend: FakeHttpBackend
) -> None:
    # One event a minute per source: 10 a minute and 20 waiting for all together.
    daemon = uploading_daemon(
        daemon_factory, backend, 'rate_limit = "1/min"\nrate_limit_backlog = 2\n'
    )
    # A name per run, one event each, received together (one request: one receipt time).
    events = [{"event": "agent.run.completed", "agent": f"run-{n}"} for n in range(200)]
    status, answer = post_events(daemon.http_url(), events)
    assert (status, answer["accepted"]) == (202, 200)

    status = daemon.status()
    limit = status["rate_limit"]
    # Each source sent one event under its rule of one a minute: none waits for its own.
    # All together: 10 go now, 20 wait, and the other 170 are kept local.
    assert limit["events"] == 20 and set(limit["by_source"].values()) == {1}
    assert (status["buffer"]["pending_upload"], status["buffer"]["rate_limited"]) == (30, 170)
    assert (limit["all_sources_rule"], limit["all_sources_backlog_cap"]) == ("10/min", 20)
    why = "for the upload rate limit (1/min per source, 10/min for all sources together)"
    assert why in limit["why"]
    text = daemon.cli("status").stdout
    assert "20 for all sources together: kept locally, never uploaded" in text

    preview = json.loads(daemon.cli("preview", "--json").stdout)
    assert why in preview["waiting"]["why"]
    assert why in flush_json(daemon)["waiting"]["why"]
