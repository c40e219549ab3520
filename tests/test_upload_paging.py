"""`preview` shows the batches the next flush sends, however the backlog is paged.

Batches are cut at the batch size, the byte budget and an anonymous-id change, never at
a page boundary: the pure batcher fed in any pages gives the same batches, and the real
daemon's preview equals what its flush then sends (the PostHog capture API double).
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent_telemetryd.outbound import Outbound, OutboundBatch
from agent_telemetryd.upload.batching import Batcher, page_rows
from tests.fakes.posthog_backend import FakePostHog
from tests.fakes.upload_helpers import Factory, flush_json, post_events, posthog_env


def batches_at_once(rows: list[Outbound], max_events: int, max_bytes: int) -> list[OutboundBatch]:
    """The batches of `rows` fed to a Batcher in one page."""
    batcher = Batcher(max_events, max_bytes)
    return [*batcher.add(rows), *batcher.finish()]


@pytest.fixture
def posthog() -> Iterator[FakePostHog]:
    backend = FakePostHog().start()
    yield backend
    backend.stop()


def _row(n: int, anon: str, size: int) -> Outbound:
    return Outbound(n, f"u{n}", "e", 0, 0, "x" * size, "agent", anon)


def _uuids(batches: list) -> list[list[str]]:  # type: ignore[type-arg]
    return [[event.uuid for event in batch.events] for batch in batches]


@given(
    rows=st.lists(st.tuples(st.sampled_from("ab"), st.integers(0, 600)), max_size=60),
    cuts=st.lists(st.integers(1, 60), max_size=8),
    max_events=st.integers(1, 7),
)
def test_batches_do_not_depend_on_paging(
    rows: list[tuple[str, int]], cuts: list[int], max_events: int
) -> None:
    """The batcher fed the rows in any pages gives the batches of the rows fed at once."""
    events = [_row(i, anon, size) for i, (anon, size) in enumerate(rows)]
    batcher = Batcher(max_events, 2000)
    paged = []
    start = 0
    for cut in [*sorted(cuts), len(events)]:
        paged.extend(batcher.add(events[start:cut]))
        start = max(start, cut)
    paged.extend(batcher.finish())
    whole = batches_at_once(events, max_events, 2000)
    assert _uuids(paged) == _uuids(whole)
    assert [e.id for b in paged for e in b.events] == list(range(len(events)))
    assert all(len({e.anonymous_id for e in b.events}) == 1 for b in paged)
    assert all(len(b) <= max_events for b in paged)


def test_a_full_batch_is_given_at_once() -> None:
    """A batch is handed out as soon as it is full, not when the next row arrives."""
    batcher = Batcher(2, 10**9)
    assert batcher.add([_row(1, "a", 0)]) == []
    assert _uuids(batcher.add([_row(2, "a", 0)])) == [["u1", "u2"]]
    assert batcher.finish() == [] and batcher.finish() == []


def test_page_rows_hold_several_batches() -> None:
    assert page_rows(100) == 1000 and page_rows(1) == 10 and page_rows(10_000) == 10_000


def test_preview_shows_the_batches_the_flush_sends(
    daemon_factory: Factory, posthog: FakePostHog
) -> None:
    """Batch size 4, 3 events, `reset-id`, 45 events: the old id's 3 events, then eleven
    batches of 4 and one of 1, in preview and in the flush alike (pages of 40 rows end
    in the middle of a batch)."""
    daemon = daemon_factory(
        posthog_env(posthog.url, AGENT_TELEMETRY_MODE="upload", AGENT_TELEMETRY_BATCH_SIZE="4")
    )
    old = post_events(daemon, 3)
    daemon.cli("reset-id")
    new = post_events(daemon, 45)
    preview = json.loads(daemon.cli("preview", "--json", "--max-requests", "100").stdout)
    previewed = [[e["uuid"] for e in r["body"]["batch"]] for r in preview["requests"]]

    report = flush_json(daemon)
    assert (report["exit_code"], report["events_sent"]) == (0, 48)
    sent = [[e["uuid"] for e in r.body["batch"]] for r in posthog.batch_requests()]
    assert previewed == sent
    expected = [old] + [new[i : i + 4] for i in range(0, 45, 4)]
    assert sent == expected
    assert [len(b) for b in sent] == [3] + [4] * 11 + [1]
    distinct = [{e["distinct_id"] for e in r.body["batch"]} for r in posthog.batch_requests()]
    assert all(len(ids) == 1 for ids in distinct) and distinct[0] != distinct[1]
    assert preview["more_requests"] == 0 and preview["shown_events"] == 48


def test_preview_stops_at_max_requests(daemon_factory: Factory, posthog: FakePostHog) -> None:
    """A preview cut short shows the first batches of the flush, in full."""
    daemon = daemon_factory(
        posthog_env(posthog.url, AGENT_TELEMETRY_MODE="upload", AGENT_TELEMETRY_BATCH_SIZE="4")
    )
    post_events(daemon, 3)
    daemon.cli("reset-id")
    post_events(daemon, 45)
    preview = json.loads(daemon.cli("preview", "--json", "--max-requests", "3").stdout)
    previewed = [[e["uuid"] for e in r["body"]["batch"]] for r in preview["requests"]]
    assert [len(b) for b in previewed] == [3, 4, 4]
    flush_json(daemon)
    sent = [[e["uuid"] for e in r.body["batch"]] for r in posthog.batch_requests()]
    assert previewed == sent[:3]
    assert preview["shown_events"] == 11 and preview["more_requests"] == 10
