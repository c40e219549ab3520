"""A misbehaving backend never loses, duplicates without bound, or blocks anything.

500s, 429 with Retry-After, 413, a 400 for one event, 401, and kill -9 mid-batch: the
real daemon against the PostHog capture API double.
"""

from __future__ import annotations

import json
import signal
import socket
import sqlite3
import subprocess
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from tests.daemon_process import CLI
from tests.fakes.backend import Scripted
from tests.fakes.posthog_backend import FakePostHog
from tests.fakes.upload_helpers import Factory, flush_json, post_events, posthog_env, upload_states


@pytest.fixture
def posthog() -> Iterator[FakePostHog]:
    backend = FakePostHog().start()
    yield backend
    backend.stop()


def _uploading(factory: Factory, posthog: FakePostHog, **env: str):  # type: ignore[no-untyped-def]
    daemon = factory(posthog_env(posthog.url, AGENT_TELEMETRY_MODE="upload", **env))
    return daemon


def test_500_500_200_delivers_everything(daemon_factory: Factory, posthog: FakePostHog) -> None:
    """Two 500s then 200: the batch is retried with backoff; every event arrives, none lost."""
    posthog.script = [Scripted(500), Scripted(503)]
    daemon = _uploading(daemon_factory, posthog)
    uuids = post_events(daemon, 30)
    report = flush_json(daemon)
    assert (report["exit_code"], report["events_sent"], report["requests"]) == (0, 30, 3)
    assert [r.status for r in posthog.batch_requests()] == [500, 503, 200]
    assert [e["uuid"] for e in posthog.accepted_events()] == uuids
    # The same uuids each time: a retry is the same batch.
    bodies = [[e["uuid"] for e in r.body["batch"]] for r in posthog.batch_requests()]
    assert bodies[0] == bodies[1] == bodies[2]
    receipts = [r for r in _receipts(daemon)]
    assert [r["status"] for r in receipts][:3] == ["accepted", "retry", "retry"]
    assert all(len(r["body_sha256"]) == 64 and r["events"] == 30 for r in receipts)


def test_backend_down_ends_the_flush_and_keeps_events_pending(daemon_factory: Factory) -> None:
    """Nothing listening: bounded tries, a non-zero exit, and the events stay pending."""
    daemon = daemon_factory(posthog_env("http://127.0.0.1:9", AGENT_TELEMETRY_MODE="upload"))
    post_events(daemon, 10)
    result = daemon.cli("flush", check=False)
    assert result.returncode == 1
    assert "backend is unavailable" in result.stdout and "stay pending" in result.stdout
    assert daemon.status()["buffer"]["pending_upload"] == 10


def test_429_retry_after_is_honoured(daemon_factory: Factory, posthog: FakePostHog) -> None:
    """429 with Retry-After: 2 → the next try comes no sooner than two seconds later."""
    posthog.script = [Scripted(429, headers={"Retry-After": "2"})]
    daemon = _uploading(daemon_factory, posthog)
    post_events(daemon, 5)
    report = flush_json(daemon)
    assert report["events_sent"] == 5
    first, second = posthog.batch_requests()
    assert (first.status, second.status) == (429, 200)
    assert second.at - first.at >= 1.9


def test_413_splits_batches_until_accepted(daemon_factory: Factory, posthog: FakePostHog) -> None:
    """A backend that takes at most 30 events a request: batches halve until accepted."""
    posthog.max_events = 30
    daemon = _uploading(daemon_factory, posthog, AGENT_TELEMETRY_BATCH_SIZE="100")
    uuids = post_events(daemon, 200)
    report = flush_json(daemon)
    assert report["events_sent"] == 200 and report["quarantined"] == 0
    accepted = [r for r in posthog.batch_requests() if r.status == 200]
    assert all(len(r.body["batch"]) <= 30 for r in accepted)
    assert {r.status for r in posthog.batch_requests()} == {200, 413}
    assert sorted(e["uuid"] for e in posthog.accepted_events()) == sorted(uuids)


def test_one_bad_event_is_quarantined_alone(daemon_factory: Factory, posthog: FakePostHog) -> None:
    """400 for every batch holding one uuid: that event alone is quarantined, the rest go."""
    daemon = _uploading(daemon_factory, posthog, AGENT_TELEMETRY_BATCH_SIZE="50")
    uuids = post_events(daemon, 120)
    bad = uuids[37]
    posthog.reject_uuids = {bad}
    report = flush_json(daemon)
    assert report["exit_code"] == 0
    assert (report["events_sent"], report["quarantined"]) == (119, 1)
    delivered = [e["uuid"] for e in posthog.accepted_events()]
    assert sorted(delivered) == sorted(u for u in uuids if u != bad)
    assert upload_states(daemon)[bad] == "quarantined"
    listed = json.loads(daemon.cli("quarantine", "--json").stdout)
    assert listed["total"] == 1 and listed["events"][0]["uuid"] == bad
    assert "refused by the backend" in listed["events"][0]["reason"]
    assert bad in daemon.cli("quarantine").stdout
    assert daemon.status()["buffer"]["quarantined"] == 1
    # Never re-sent.
    count = len(posthog.batch_requests())
    assert flush_json(daemon)["events_sent"] == 0 and len(posthog.batch_requests()) == count


def test_a_bad_event_alone_in_the_first_batch_does_not_block_the_rest(
    daemon_factory: Factory, posthog: FakePostHog
) -> None:
    """A bad event under the old id, then `reset-id`, then good ones: the first batch is
    that event alone and refused; it is quarantined and the rest go in the same flush."""
    daemon = _uploading(daemon_factory, posthog)
    [bad] = post_events(daemon, 1)
    daemon.cli("reset-id")
    good = post_events(daemon, 5)
    posthog.reject_uuids = {bad}
    report = flush_json(daemon)
    assert report["exit_code"] == 0 and report["error"] is None
    assert (report["events_sent"], report["quarantined"], report["batches"]) == (5, 1, 1)
    assert [e["uuid"] for e in posthog.accepted_events()] == good
    assert upload_states(daemon) == {bad: "quarantined", **dict.fromkeys(good, "sent")}
    listed = json.loads(daemon.cli("quarantine", "--json").stdout)
    assert [e["uuid"] for e in listed["events"]] == [bad]
    assert "refused by the backend" in listed["events"][0]["reason"]
    # The next flush has nothing to send and sends nothing.
    count = len(posthog.batch_requests())
    assert flush_json(daemon)["events_sent"] == 0 and len(posthog.batch_requests()) == count


def test_a_bad_first_event_with_batches_of_one(
    daemon_factory: Factory, posthog: FakePostHog
) -> None:
    """Batch size 1 and the first event bad: held while nothing is accepted, quarantined
    as soon as the next one is accepted."""
    daemon = _uploading(daemon_factory, posthog, AGENT_TELEMETRY_BATCH_SIZE="1")
    uuids = post_events(daemon, 4)
    posthog.reject_uuids = {uuids[0]}
    report = flush_json(daemon)
    assert (report["exit_code"], report["events_sent"], report["quarantined"]) == (0, 3, 1)
    assert [e["uuid"] for e in posthog.accepted_events()] == uuids[1:]
    assert upload_states(daemon)[uuids[0]] == "quarantined"


def test_backend_refusing_everything_quarantines_nothing(
    daemon_factory: Factory, posthog: FakePostHog
) -> None:
    """A backend answering 400 to every request: no event is blamed; all stay pending."""
    daemon = _uploading(daemon_factory, posthog, AGENT_TELEMETRY_BATCH_SIZE="8")
    uuids = post_events(daemon, 8)
    posthog.reject_uuids = set(uuids)
    report = flush_json(daemon, check=False)
    assert report["exit_code"] == 1 and "refused every event" in report["error"]
    assert "8 events" in report["error"] and "nothing was quarantined" in report["error"]
    assert report["quarantined"] == 0
    assert daemon.status()["buffer"]["pending_upload"] == 8


def test_backend_refusing_everything_stops_after_two_batches(
    daemon_factory: Factory, posthog: FakePostHog
) -> None:
    """Refusing every batch: two batches are bisected, the third is never sent, nothing
    is quarantined, and the next flush does the same (bounded) work again."""
    daemon = _uploading(daemon_factory, posthog, AGENT_TELEMETRY_BATCH_SIZE="4")
    uuids = post_events(daemon, 12)
    posthog.reject_uuids = set(uuids)
    report = flush_json(daemon, check=False)
    assert report["exit_code"] == 1 and "refused every event" in report["error"]
    assert "8 events" in report["error"] and "nothing was quarantined" in report["error"]
    assert (report["events_sent"], report["quarantined"]) == (0, 0)
    tried = {e["uuid"] for e in posthog.all_sent_events()}
    assert tried == set(uuids[:8])
    # Per batch of 4: three tries, then halves (2), then singles (4).
    assert len(posthog.batch_requests()) == report["requests"] == 2 * (3 + 2 + 4)
    status = daemon.status()["buffer"]
    assert (status["pending_upload"], status["quarantined"]) == (12, 0)
    again = flush_json(daemon, check=False)
    assert again["exit_code"] == 1 and again["requests"] == report["requests"]
    assert daemon.status()["buffer"]["pending_upload"] == 12


def test_wrong_api_key_fails_the_flush_and_blames_no_event(
    daemon_factory: Factory, posthog: FakePostHog
) -> None:
    posthog.api_key = "phc_other"
    daemon = _uploading(daemon_factory, posthog)
    post_events(daemon, 10)
    result = daemon.cli("flush", check=False)
    assert result.returncode == 1 and "refused the upload" in result.stdout
    assert "phc_test_key" not in result.stdout + result.stderr + daemon.log()
    status = daemon.status()
    assert status["buffer"]["pending_upload"] == 10 and status["buffer"]["quarantined"] == 0
    assert len(posthog.batch_requests()) == 1


def test_kill_9_mid_batch_resends_the_same_uuids(
    daemon_factory: Factory, posthog: FakePostHog
) -> None:
    """kill -9 while a batch is in flight: after restart it is re-sent, uuids unchanged,
    nothing missing."""
    daemon = _uploading(daemon_factory, posthog, AGENT_TELEMETRY_BATCH_SIZE="25")
    uuids = post_events(daemon, 60)
    posthog.hold_after = 1  # the first batch is answered; the second hangs in flight
    flushing = subprocess.Popen(
        [CLI, "flush"], env=daemon.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    assert posthog.arrived.wait(15)
    assert daemon.proc is not None
    daemon.proc.send_signal(signal.SIGKILL)
    daemon.proc.wait(10)
    flushing.wait(10)
    posthog.hold_after = None
    posthog.hold.clear()
    posthog.release.set()
    posthog.wait_for(lambda: len(posthog.batch_requests()) == 2)
    in_flight = [e["uuid"] for e in posthog.batch_requests()[1].body["batch"]]

    daemon.start()
    report = flush_json(daemon)
    assert report["events_sent"] == 60 - 25
    after = posthog.batch_requests()[2:]
    resent = [e["uuid"] for e in after[0].body["batch"]]
    assert resent == in_flight  # the same batch, the same uuids
    everything = {e["uuid"] for e in posthog.all_sent_events()}
    assert everything == set(uuids)
    assert set(upload_states(daemon).values()) == {"sent"}


def test_concurrent_flushes_share_one_run(daemon_factory: Factory, posthog: FakePostHog) -> None:
    """Single flight: a flush asked for while one runs waits for it and reports its result."""
    posthog.delay = 0.3
    daemon = _uploading(daemon_factory, posthog, AGENT_TELEMETRY_BATCH_SIZE="10")
    post_events(daemon, 40)
    runs = [
        subprocess.Popen([CLI, "flush", "--json"], env=daemon.env, stdout=subprocess.PIPE)
        for _ in range(3)
    ]
    reports = [json.loads(run.communicate(timeout=30)[0]) for run in runs]
    assert len({r["started_at"] for r in reports}) == 1
    assert reports[0]["events_sent"] == 40
    assert len(posthog.batch_requests()) == 4


def _receipts(daemon) -> list[dict]:  # type: ignore[no-untyped-def]
    import sqlite3

    conn = sqlite3.connect(f"file:{daemon.database}?mode=ro", uri=True)
    try:
        rows = conn.execute(
            "SELECT status, events, body_sha256, http_status, error FROM upload_receipts"
            " ORDER BY id"
        ).fetchall()
    finally:
        conn.close()
    names = ("status", "events", "body_sha256", "http_status", "error")
    ordered = [dict(zip(names, r, strict=True)) for r in rows]
    # Failed tries are written when they happen, the accepted one with its marks.
    return sorted(ordered, key=lambda r: r["status"] != "accepted")


def test_flush_needs_the_daemon(daemon_factory: Factory, posthog: FakePostHog) -> None:
    """Events wait for upload, and no daemon (nor a socket unit) is there to send them."""
    daemon = _uploading(daemon_factory, posthog)
    post_events(daemon, 1)
    daemon.stop()
    result = daemon.cli("flush", check=False)
    assert result.returncode == 1 and "needs the daemon" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_body_limit_refusing_every_request_quarantines_nothing(
    daemon_factory: Factory, posthog: FakePostHog
) -> None:
    """A proxy answering 413 to any request, however small: splitting down to single
    events finds no event to blame. Two batches are tried, nothing is quarantined, the
    flush fails saying the backend refuses every event and why."""
    posthog.body_limit = 100  # smaller than any request
    daemon = _uploading(daemon_factory, posthog, AGENT_TELEMETRY_BATCH_SIZE="4")
    post_events(daemon, 12)
    result = daemon.cli("flush", "--json", check=False)
    report = json.loads(result.stdout)
    assert result.returncode == 1
    assert "refused every event it was sent (8 events in 2 batches" in report["error"]
    assert "too large for the backend: HTTP 413" in report["error"]
    assert "a limit on the request size" in report["error"]
    assert (report["quarantined"], report["requests"]) == (0, 2 * (1 + 2 + 4))
    status = daemon.status()["buffer"]
    assert (status["pending_upload"], status["quarantined"]) == (12, 0)


def test_an_event_too_large_for_the_backend_is_still_quarantined(
    daemon_factory: Factory, posthog: FakePostHog
) -> None:
    """The same body limit, with one event larger than it among small ones the backend
    takes: that event alone is quarantined as too large; the others are delivered."""
    posthog.body_limit = 4096
    daemon = _uploading(daemon_factory, posthog, AGENT_TELEMETRY_BATCH_SIZE="10")
    small = post_events(daemon, 4)
    large = _post_large_event(daemon)
    small += post_events(daemon, 5)
    report = flush_json(daemon)
    assert (report["exit_code"], report["events_sent"], report["quarantined"]) == (0, 9, 1)
    assert sorted(e["uuid"] for e in posthog.accepted_events()) == sorted(small)
    listed = json.loads(daemon.cli("quarantine", "--json").stdout)
    assert [e["uuid"] for e in listed["events"]] == [large]
    assert listed["events"][0]["reason"].startswith("too large for the backend: HTTP 413")


def _post_large_event(daemon) -> str:  # type: ignore[no-untyped-def]
    """One event of ~20 KB that gzip cannot shrink much: letters in random order."""
    import random
    import string

    rng = random.Random(7)
    words = ["".join(rng.choices(string.ascii_lowercase, k=6)) for _ in range(3000)]
    parts = {f"part{i}": " ".join(words[i * 500 : (i + 1) * 500])[:3500] for i in range(6)}
    return _post_event(daemon, parts)


def test_a_redirect_ends_the_flush_and_names_where_it_points(
    daemon_factory: Factory, posthog: FakePostHog
) -> None:
    """308 to another host: not followed, not retried; the flush fails at once naming the
    address it points to (without credentials or query) and the setting to change."""
    posthog.answer_always = Scripted(
        308,
        headers={"Location": "https://ops:hunter2@eu.i.posthog.com/batch/?token=abc#x"},
        body={"error": "nope"},
    )
    daemon = _uploading(daemon_factory, posthog)
    post_events(daemon, 5)
    result = daemon.cli("flush", check=False)
    assert result.returncode == 1
    assert "a redirect to https://eu.i.posthog.com/batch/;" in result.stdout
    assert "set posthog.host / POSTHOG_HOST to the final address" in result.stdout
    assert not any(word in result.stdout for word in ("hunter2", "ops:", "token=", "#x"))
    assert "unavailable" not in result.stdout
    assert len(posthog.batch_requests()) == 1
    assert daemon.status()["buffer"]["pending_upload"] == 5


def test_retry_after_is_kept_for_the_next_flush_and_shown_in_status(
    daemon_factory: Factory, posthog: FakePostHog
) -> None:
    """A backend always answering 429 with Retry-After: 3600. The flush ends; a flush
    asked for right after sends nothing and says until when; `status` shows the wait,
    and the 10 s schedule's next run is no sooner than it."""
    posthog.answer_always = Scripted(429, headers={"Retry-After": "3600"})
    daemon = _uploading(daemon_factory, posthog, AGENT_TELEMETRY_UPLOAD_INTERVAL="10s")
    post_events(daemon, 5)
    first = flush_json(daemon, check=False)
    # 75, "try again later": the upload timer's unit does not count it as a failure.
    assert first["exit_code"] == 75 and "asked to wait 3600s" in first["error"]
    assert first["not_before"] is not None
    assert len(posthog.batch_requests()) == 1

    again = daemon.cli("flush", check=False)
    assert again.returncode == 75
    assert f"not contacted again before {first['not_before']}" in again.stdout
    assert "it asked to wait 3600s (HTTP 429)" in again.stdout
    assert len(posthog.batch_requests()) == 1  # nothing sent

    status = daemon.status()
    wait = status["upload"]["not_before"]
    assert wait["until"] == first["not_before"]
    assert wait["reason"] == "it asked to wait 3600s (HTTP 429)"
    until = datetime.fromisoformat(wait["until"])
    assert datetime.fromisoformat(status["next_upload"]) >= until - timedelta(seconds=1)
    assert status["buffer"]["pending_upload"] == 5


def test_a_retry_after_of_centuries_is_held_a_day_and_the_daemon_still_starts(
    daemon_factory: Factory, posthog: FakePostHog
) -> None:
    """429 with `Retry-After: 300000000000` (9,500 years, past the year 9999): the flush
    ends asking to wait a day, `status` shows that day, and the daemon starts again with
    the wait kept; a stored wait too far to be a date is dropped rather than read."""
    posthog.script = [Scripted(429, headers={"Retry-After": "300000000000"})]
    daemon = _uploading(daemon_factory, posthog)
    post_events(daemon, 3)
    report = flush_json(daemon, check=False)
    assert report["exit_code"] == 75 and "asked to wait 86400s" in report["error"]
    until = datetime.fromisoformat(report["not_before"])
    started = datetime.fromisoformat(report["started_at"])
    assert timedelta(hours=23) < until - started <= timedelta(days=1, seconds=1)

    daemon.stop()
    daemon.start()
    assert daemon.status()["upload"]["not_before"]["until"] == report["not_before"]

    daemon.stop()
    conn = sqlite3.connect(daemon.database)
    query = "SELECT value FROM meta WHERE key = 'upload_not_before'"
    stored = json.loads(conn.execute(query).fetchone()[0])
    stored["until_ms"] = 300_000_000_000_000  # as kept before the wait was bounded
    with conn:
        conn.execute(
            "UPDATE meta SET value = ? WHERE key = 'upload_not_before'", (json.dumps(stored),)
        )
    conn.close()
    daemon.start()
    assert daemon.status()["upload"]["not_before"] is None
    assert flush_json(daemon)["events_sent"] == 3


def test_a_retry_after_of_a_non_ascii_digit_is_a_retry_not_a_failed_flush(
    daemon_factory: Factory, posthog: FakePostHog
) -> None:
    """429 with `Retry-After: ²` (a digit to Python, not to HTTP), then 200: the header is
    ignored, the batch retried after the backoff step, and every event is sent."""
    posthog.script = [Scripted(429, headers={"Retry-After": "\u00b2"})]
    daemon = _uploading(daemon_factory, posthog)
    uuids = post_events(daemon, 3)
    report = flush_json(daemon)
    assert (report["exit_code"], report["events_sent"], report["requests"]) == (0, 3, 2)
    assert [e["uuid"] for e in posthog.accepted_events()] == uuids
    assert "http_request_failed" not in daemon.log()


def test_a_retry_after_in_asctime_form_is_honoured(
    daemon_factory: Factory, posthog: FakePostHog
) -> None:
    """429 with a Retry-After an hour ahead in HTTP's asctime form (no zone: GMT): the
    flush ends asking to wait that hour, as it does for the other date forms; nothing
    is sent again meanwhile."""
    moment = datetime.now(UTC) + timedelta(hours=1)
    posthog.answer_always = Scripted(
        429, headers={"Retry-After": moment.strftime("%a %b %d %H:%M:%S %Y")}
    )
    daemon = _uploading(daemon_factory, posthog)
    post_events(daemon, 3)
    report = flush_json(daemon, check=False)
    assert report["exit_code"] == 75 and "the backend asked to wait" in report["error"]
    until = datetime.fromisoformat(report["not_before"])
    assert abs(until - moment) < timedelta(seconds=2)
    assert len(posthog.batch_requests()) == 1


def test_proxy_variables_in_the_daemon_s_environment_are_not_used(
    daemon_factory: Factory, posthog: FakePostHog
) -> None:
    """HTTP_PROXY, HTTPS_PROXY and ALL_PROXY (either case) name a listener that counts
    the connections it gets and closes them: the events go straight to the configured
    host, and the listener is never connected to. Where events go is the config's, not
    an inherited variable's."""
    proxy = socket.create_server(("127.0.0.1", 0))
    connections: list[str] = []

    def count() -> None:
        while True:
            try:
                accepted, _ = proxy.accept()
            except OSError:
                return  # closed by the test
            connections.append("connected")
            accepted.close()

    threading.Thread(target=count, daemon=True).start()
    address = f"http://127.0.0.1:{proxy.getsockname()[1]}"
    names = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY")
    variables = {name: address for name in names} | {name.lower(): address for name in names}
    try:
        daemon = _uploading(daemon_factory, posthog, **variables)
        uuids = post_events(daemon, 5)
        assert flush_json(daemon)["events_sent"] == 5
        assert [e["uuid"] for e in posthog.accepted_events()] == uuids
        assert connections == []
    finally:
        proxy.close()


def test_the_backend_s_error_text_stays_out_of_the_log(
    daemon_factory: Factory, posthog: FakePostHog
) -> None:
    """A backend quoting the refused event in its error text: the log says the status and
    what kind of failure, never that text; the quarantine and the receipts (the user's
    own) keep it, scrubbed as stored events are."""
    daemon = _uploading(daemon_factory, posthog, AGENT_TELEMETRY_BATCH_SIZE="4")
    post_events(daemon, 8)
    bad = _post_event(daemon, {"note": "acme merger plan"})
    posthog.reject_uuids = {bad}
    posthog.quote_rejected = True
    posthog.script = [Scripted(503, body={"detail": "overloaded, ask bob@corp.example"})]
    report = flush_json(daemon)
    assert (report["exit_code"], report["events_sent"], report["quarantined"]) == (0, 8, 1)
    listed = json.loads(daemon.cli("quarantine", "--json").stdout)
    assert "acme merger plan" in listed["events"][0]["reason"]
    errors = [r["error"] for r in _receipts(daemon) if r["error"]]
    assert "HTTP 503: overloaded, ask [email]" in errors
    log = daemon.log()
    assert '"problem": "HTTP 503"' in log and '"why": "refused"' in log
    for text in ("acme merger plan", "overloaded", "corp.example", "invalid event"):
        assert text not in log, text


def _post_event(daemon, properties: dict) -> str:  # type: ignore[no-untyped-def,type-arg]
    import urllib.request
    import uuid as uuid_module

    value = str(uuid_module.uuid4())
    event = {"event": "agent.run.completed", "uuid": value, "agent": "tester"}
    request = urllib.request.Request(
        daemon.http_url() + "/v1/events",
        data=json.dumps({"events": [{**event, "properties": properties}]}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        assert json.loads(response.read())["accepted"] == 1
    return value
