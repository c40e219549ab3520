"""PostHog sender: erasure needs a personal API key; the body builder, with plain values."""

from __future__ import annotations

import json

from agent_telemetryd.outbound import Outbound, OutboundBatch
from agent_telemetryd.senders.posthog import app_host, batch_body
from tests.fakes.posthog_backend import FakePostHog
from tests.fakes.upload_helpers import Factory, flush_json, post_events, posthog_env


def _event(n: int, props: str = '{"a": 1}') -> Outbound:
    return Outbound(
        n,
        f"0190000{n}-0000-7000-8000-000000000000",
        "e",
        1_700_000_000_000,
        1_700_000_000_500,
        props,
        "planner",
        "anon",
    )


def test_batch_body_is_what_posthog_batch_takes() -> None:
    body = batch_body("phc_k", OutboundBatch("anon", (_event(1),)), "2026-01-01T00:00:00.000Z")
    assert body["api_key"] == "phc_k" and body["historical_migration"] is False
    (event,) = body["batch"]
    assert event["distinct_id"] == "anon" and event["timestamp"] == "2023-11-14T22:13:20.000Z"
    assert event["properties"]["a"] == 1 and event["properties"]["agent"] == "planner"
    assert event["properties"]["$process_person_profile"] is False
    assert event["properties"]["$geoip_disable"] is True


def test_app_host_for_cloud_and_self_hosted() -> None:
    assert app_host("https://eu.i.posthog.com") == "https://eu.posthog.com"
    assert app_host("https://ph.example.com/") == "https://ph.example.com"


def test_forget_without_personal_key_says_the_team_must_delete(daemon_factory: Factory) -> None:
    posthog = FakePostHog().start()
    try:
        daemon = daemon_factory(posthog_env(posthog.url, AGENT_TELEMETRY_MODE="upload"))
        post_events(daemon, 3)
        flush_json(daemon)
        before = len(posthog.snapshot())
        out = json.loads(daemon.cli("forget", "--yes", "--json", check=False).stdout)
        assert out["erasure"]["requested"] is False
        assert "team must delete the remote data" in out["erasure"]["message"]
        assert len(posthog.snapshot()) == before  # nothing sent
    finally:
        posthog.stop()


def test_forget_with_personal_key_asks_posthog_to_delete(daemon_factory: Factory) -> None:
    posthog = FakePostHog().start()
    try:
        env = posthog_env(
            posthog.url,
            AGENT_TELEMETRY_MODE="upload",
            POSTHOG_PERSONAL_API_KEY="phx_personal",
            POSTHOG_PROJECT_ID="42",
        )
        daemon = daemon_factory(env)
        post_events(daemon, 3)
        flush_json(daemon)
        anonymous_id = daemon.status()["anonymous_id"]
        daemon.cli("forget", "--yes")
        (erasure,) = posthog.erasures
        assert erasure["project"] == "42"
        assert erasure["body"] == {"distinct_ids": [anonymous_id], "delete_events": True}
        assert "phx_personal" not in daemon.log()
    finally:
        posthog.stop()
