"""/metrics, read with prometheus_client's own text parser: counts, latency, pool, no content."""

from __future__ import annotations

import uuid
from typing import Any

from prometheus_client.parser import text_string_to_metric_families
from server_helpers import INGEST_KEYS, Running, StartServer, make_batch, make_event

from agent_telemetry_server.config import Rate

PREFIX = "agent_telemetry_server_"


async def scrape(
    server: Running,
) -> tuple[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]]:
    """The text and every sample as {(name, sorted labels): value}."""
    async with server.session.get(f"{server.url}/metrics") as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/plain")
        text = await resp.text()
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    return text, samples


def value(samples: dict[Any, float], name: str, **labels: str) -> float:
    return samples.get((PREFIX + name, tuple(sorted(labels.items()))), 0.0)


async def test_a_batch_is_counted_by_outcome(server: Running) -> None:
    _, before = await scrape(server)
    events = [make_event() for _ in range(7)]
    events.append(events[0])  # the same uuid again: a duplicate
    events.append({"event": "no uuid or timestamp"})  # rejected
    status, body, _ = await server.post_batch(make_batch(events))
    assert (status, body["accepted"], body["duplicates"], len(body["rejected"])) == (200, 7, 1, 1)
    await server.post_batch(make_batch([]), key="wrong")  # 401

    _, after = await scrape(server)

    def grew(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert grew("events_total", outcome="accepted") == 7
    assert grew("events_total", outcome="duplicates") == 1
    assert grew("events_total", outcome="rejected") == 1
    assert grew("batches_total", result="stored") == 1
    batch_route = "/api/v1/telemetry/batch"
    assert grew("requests_total", route=batch_route, status="200") == 1
    assert grew("requests_total", route=batch_route, status="401") == 1
    assert grew("request_duration_seconds_count", route=batch_route) == 2
    assert value(after, "request_duration_seconds_bucket", route=batch_route, le="+Inf") == 2
    # The pool as it stands, read at the scrape.
    assert value(after, "pool_max") == 10
    assert 1 <= value(after, "pool_size") <= 10
    assert value(after, "pool_idle") <= value(after, "pool_size")
    assert value(after, "requests_in_progress") == 1  # this scrape itself
    assert ("process_resident_memory_bytes", ()) in after or (
        "process_cpu_seconds_total",
        (),
    ) in after


async def test_rate_limited_requests_are_counted_by_scope(start_server: StartServer) -> None:
    server = await start_server(anonymous_id_rate=Rate(1, 3600.0))
    anonymous_id = str(uuid.uuid4())
    first, _, _ = await server.post_batch(make_batch([make_event()], anonymous_id))
    second, _, _ = await server.post_batch(make_batch([make_event()], anonymous_id))
    assert (first, second) == (200, 429)
    _, samples = await scrape(server)
    assert value(samples, "rate_limited_total", scope="anonymous_id") == 1
    assert value(samples, "rate_limited_total", scope="key") == 0


async def test_no_content_and_bounded_labels(server: Running) -> None:
    canary = "canary-event-4d1f"
    anonymous_id = str(uuid.uuid4())
    await server.post_batch(
        make_batch([make_event(canary, {"note": canary}, agent=canary)], anonymous_id)
    )
    await server.delete_user(anonymous_id)
    await server.get(f"/api/v1/unknown/{canary}")
    text, samples = await scrape(server)
    for secret in (canary, anonymous_id, INGEST_KEYS[0]):
        assert secret not in text, secret
    routes = {r.resource.canonical for r in server.app.router.routes() if r.resource} | {
        "(unmatched)"
    }
    allowed = {
        "route": routes,
        "outcome": {"accepted", "duplicates", "rejected"},
        "result": {"stored", "replayed"},
        "scope": {"key", "anonymous_id"},
    }
    for (name, labels), _ in samples.items():
        for label, label_value in labels:
            if label == "status":
                assert label_value.isdigit() and len(label_value) == 3
            elif label != "le":
                assert label_value in allowed[label], (name, label, label_value)
    assert (
        value(
            samples, "requests_total", route="/api/v1/telemetry/users/{anonymous_id}", status="200"
        )
        == 1
    )
