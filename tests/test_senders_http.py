"""The custom `http` sender against its documented contract, through the real daemon, and
`forget` with its erasure request."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import pytest

from tests.fakes.http_backend import FakeHttpBackend
from tests.fakes.upload_helpers import FAST, Factory, flush_json, post_events


@pytest.fixture
def backend() -> Iterator[FakeHttpBackend]:
    server = FakeHttpBackend().start()
    yield server
    server.stop()


def _env(url: str, **extra: str) -> dict[str, str]:
    return {
        **FAST,
        "AGENT_TELEMETRY_SENDER": "http",
        "TELEMETRY_ENDPOINT": url,
        "TELEMETRY_API_KEY": "secret-ingest-key",
        "AGENT_TELEMETRY_MODE": "upload",
        **extra,
    }


def test_http_sender_speaks_the_contract(daemon_factory: Factory, backend: FakeHttpBackend) -> None:
    daemon = daemon_factory(_env(backend.url, AGENT_TELEMETRY_BATCH_SIZE="40"))
    uuids = post_events(daemon, 100, agent="planner")
    report = flush_json(daemon)
    assert (report["exit_code"], report["events_sent"], report["batches"]) == (0, 100, 3)
    anonymous_id = daemon.status()["anonymous_id"]
    requests = [r for r in backend.snapshot() if r.method == "POST"]
    for request in requests:
        assert request.headers["Authorization"] == "Bearer secret-ingest-key"
        assert request.headers["Content-Encoding"] == "gzip"
        assert request.body["anonymous_id"] == anonymous_id
        sent = sorted(e["uuid"] for e in request.body["events"])
        expected = hashlib.sha256("".join(u + "\n" for u in sent).encode()).hexdigest()
        assert request.headers["Idempotency-Key"] == expected
        for event in request.body["events"]:
            assert event["agent"] == "planner" and event["received_at"].endswith("Z")
    assert set(backend.stored) == set(uuids)
    assert "secret-ingest-key" not in daemon.log()


def test_retry_after_500_reuses_the_idempotency_key(
    daemon_factory: Factory, backend: FakeHttpBackend
) -> None:
    from tests.fakes.backend import Scripted

    backend.script = [Scripted(502)]
    daemon = daemon_factory(_env(backend.url))
    post_events(daemon, 10)
    assert flush_json(daemon)["events_sent"] == 10
    first, second = [r for r in backend.snapshot() if r.method == "POST"]
    assert first.headers["Idempotency-Key"] == second.headers["Idempotency-Key"]


def test_forget_clears_resets_and_erases_remotely(
    daemon_factory: Factory, backend: FakeHttpBackend
) -> None:
    daemon = daemon_factory(_env(backend.url))
    post_events(daemon, 12)
    flush_json(daemon)
    old_id = daemon.status()["anonymous_id"]
    assert len(backend.stored) == 12
    result = daemon.cli("forget", "--yes")
    assert "Deleted 12 events." in result.stdout
    assert backend.deleted_ids == [old_id] and backend.stored == {}
    status = daemon.status()
    assert status["anonymous_id"] != old_id and status["buffer"]["events"] == 0
    # forget sent nothing but the erasure request.
    assert [r.method for r in backend.snapshot()][-1] == "DELETE"


def test_forget_with_the_daemon_down_still_erases(
    daemon_factory: Factory, backend: FakeHttpBackend
) -> None:
    daemon = daemon_factory(_env(backend.url))
    post_events(daemon, 3)
    flush_json(daemon)
    old_id = daemon.status()["anonymous_id"]
    daemon.stop()
    result = daemon.cli("forget", "--yes", "--json")
    assert '"deleted": 3' in result.stdout
    assert backend.deleted_ids == [old_id]
