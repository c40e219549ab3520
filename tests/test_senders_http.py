"""The custom `http` sender against its documented contract, through the real daemon, and
`forget` with its erasure request."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Iterator

import pytest

from tests.fakes.backend import Scripted
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


def test_an_answer_in_two_chunks_is_read_whole(
    daemon_factory: Factory, backend: FakeHttpBackend
) -> None:
    """A 200 naming one refused event, written in two chunks 0.3 s apart: that event is
    quarantined with the backend's reason, only the other four are counted sent."""
    daemon = daemon_factory(_env(backend.url))
    uuids = post_events(daemon, 5)
    backend.reject_uuids = {uuids[2]: "bad property"}
    backend.answer_in_two_chunks = 0.3
    result = daemon.cli("flush")
    assert "Sent 4 events in 1 batches." in result.stdout
    assert "Quarantined 1 events" in result.stdout
    listed = json.loads(daemon.cli("quarantine", "--json").stdout)
    assert [(e["uuid"], e["reason"]) for e in listed["events"]] == [
        (uuids[2], "refused by the backend: bad property")
    ]
    assert set(backend.stored) == set(uuids) - {uuids[2]}


def test_an_answer_over_the_bound_is_not_taken_for_success(
    daemon_factory: Factory, backend: FakeHttpBackend
) -> None:
    """A 200 whose answer is over the size the daemon reads cannot say which events were
    refused: nothing is marked sent on it; the batch is sent again (same key) and the
    next, readable answer decides."""
    daemon = daemon_factory(_env(backend.url))
    post_events(daemon, 3)
    backend.script = [Scripted(200, body={"accepted": 3, "padding": "x" * (2 * 1024 * 1024)})]
    report = flush_json(daemon)
    assert (report["exit_code"], report["events_sent"], report["requests"]) == (0, 3, 2)
    first, second = [r for r in backend.snapshot() if r.method == "POST"]
    assert first.headers["Idempotency-Key"] == second.headers["Idempotency-Key"]
    [unread] = [r for r in _receipts(daemon) if r["status"] != "accepted"]
    assert unread["status"] == "retry" and unread["http_status"] == 200
    assert "answer over 1024 KiB, not read" in unread["error"]


def test_a_backend_rejecting_every_event_in_its_answer_quarantines_nothing(
    daemon_factory: Factory, backend: FakeHttpBackend
) -> None:
    """A 200 whose `rejected` list names every event ("schema version unsupported"):
    the backend refuses everything, so no event is blamed; the flush fails and says why."""
    daemon = daemon_factory(_env(backend.url, AGENT_TELEMETRY_BATCH_SIZE="4"))
    uuids = post_events(daemon, 12)
    backend.reject_uuids = dict.fromkeys(uuids, "schema version unsupported")
    result = daemon.cli("flush", check=False)
    assert result.returncode == 1
    assert "refused every event it was sent (8 events in 2 batches" in result.stdout
    assert "schema version unsupported" in result.stdout
    assert "nothing was quarantined" in result.stdout and "Quarantined" not in result.stdout
    status = daemon.status()["buffer"]
    assert (status["pending_upload"], status["quarantined"], status["sent"]) == (12, 0, 0)
    assert backend.stored == {}


def test_a_partly_rejecting_answer_still_quarantines_the_refused(
    daemon_factory: Factory, backend: FakeHttpBackend
) -> None:
    """The guard is for a backend refusing everything: one refused event among accepted
    ones is quarantined at once, even when its batch-mates before it were refused too."""
    daemon = daemon_factory(_env(backend.url, AGENT_TELEMETRY_BATCH_SIZE="2"))
    uuids = post_events(daemon, 4)
    backend.reject_uuids = {uuids[0]: "bad", uuids[1]: "bad", uuids[3]: "worse"}
    report = flush_json(daemon)
    assert (report["exit_code"], report["events_sent"], report["quarantined"]) == (0, 1, 3)
    assert set(backend.stored) == {uuids[2]}


def _receipts(daemon) -> list[dict]:  # type: ignore[no-untyped-def]
    conn = sqlite3.connect(f"file:{daemon.database}?mode=ro", uri=True)
    try:
        rows = conn.execute(
            "SELECT status, http_status, error FROM upload_receipts ORDER BY id"
        ).fetchall()
    finally:
        conn.close()
    return [dict(zip(("status", "http_status", "error"), r, strict=True)) for r in rows]
