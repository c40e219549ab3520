"""What is kept is scrubbed; the PostHog SDK can post to the daemon unchanged."""

from __future__ import annotations

import posthog
import pytest

from agent_telemetryd.events import Event
from agent_telemetryd.privacy.allowlist import Allowlist
from agent_telemetryd.privacy.scrub import default_scrubber
from tests.daemon_process import DaemonProcess
from tests.test_daemon_ingest import post_events, wait_for_rows

SCRUB = default_scrubber(max_string_chars=64, own_home="/home/runner")


def scrubbed(value: object) -> object:
    return SCRUB(Event("e", {"v": value}, None, None, None)).properties["v"]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("mail alice@example.com now", "mail [email] now"),
        ("/home/alice/projects/x.py", "~/projects/x.py"),
        ("/Users/bob/Library", "~/Library"),
        ("C:\\Users\\carol\\code", "~\\code"),
        ("/home/runner/work", "~/work"),
        ("from 192.168.1.20:8080", "from [ip]:8080"),
        ("v6 2001:db8::8a2e:370:7334 seen", "v6 [ip] seen"),
        ("key sk-proj-abcdefghijklmnopqrstuvwx", "key [secret]"),
        ("ghp_" + "a" * 36, "[secret]"),
        ("AKIAABCDEFGHIJKLMNOP", "[secret]"),
        ("Authorization: Bearer abcdefghijklmnopqrstu", "Authorization: [secret]"),
        ("https://x.test/?token=abc123&q=1", "https://x.test/?token=[secret]&q=1"),
        ("version 1.2.3 at 10:30", "version 1.2.3 at 10:30"),
    ],
)
def test_scrubbing_redacts_personal_data_and_secrets(raw: str, expected: str) -> None:
    assert scrubbed(raw) == expected


def test_scrubbing_reaches_nested_values_and_secret_named_keys() -> None:
    event = SCRUB(
        Event(
            "e",
            {"nested": {"list": ["bob@corp.io", 3]}, "password": "hunter2", "n": 1.5},
            None,
            None,
            None,
        )
    )
    assert event.properties == {
        "nested": {"list": ["[email]", 3]},
        "password": "[secret]",
        "n": 1.5,
    }


def test_long_strings_are_cut() -> None:
    value = scrubbed("x" * 500)
    assert isinstance(value, str) and len(value) == 64 and value.endswith("…[cut]")


def test_allowlist_drops_other_events_and_properties() -> None:
    allow = Allowlist(frozenset({"agent.run"}), frozenset({"duration_ms"}))
    assert allow(Event("other", {}, None, None, None)) is None
    kept = allow(Event("agent.run", {"duration_ms": 3, "prompt": "secret"}, None, None, None))
    assert kept is not None and kept.properties == {"duration_ms": 3}


def test_scrubbed_values_never_reach_the_buffer(daemon: DaemonProcess) -> None:
    post_events(
        daemon.http_url(),
        [
            {
                "event": "tool.call",
                "properties": {
                    "user": "alice@example.com",
                    "cwd": "/home/alice/src/secret-project",
                    "peer": "10.1.2.3",
                    "header": "api key sk-live-0123456789abcdefghij",
                    "aws_secret_access_key": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
                    "password": ["hunter2"],
                    "api_key": "12345678901234",
                    "openai_key": "abcdefghij0123456789",
                    "env": "PGPASSWORD=pw-in-env stripe sk_live_STRIPE0123456789abcd",
                    "repo": "https://deploy:pw-in-url@git.example.test/r.git",
                    "tokens_in": 10,
                    "max_tokens": 4096,
                },
            }
        ],
    )
    (row,) = daemon.export()
    assert row["properties"] == {
        "user": "[email]",
        "cwd": "~/src/secret-project",
        "peer": "[ip]",
        "header": "api key [secret]",
        "aws_secret_access_key": "[secret]",
        "password": ["[secret]"],
        "api_key": "[secret]",
        "openai_key": "[secret]",
        "env": "PGPASSWORD=[secret] stripe [secret]",
        "repo": "https://[secret]@git.example.test/r.git",
        "gen_ai.usage.input_tokens": 10,  # stored under the GenAI convention name
        "max_tokens": 4096,
    }
    raw = (
        daemon.database.read_bytes() + daemon.database.with_name("buffer.sqlite3-wal").read_bytes()
    )
    for secret in (
        b"alice@example.com",
        b"/home/alice",
        b"10.1.2.3",
        b"sk-live-0123456789",
        b"wJalrXUtnFEMI",
        b"hunter2",
        b"12345678901234",
        b"abcdefghij0123456789",
        b"pw-in-env",
        b"STRIPE0123456789",
        b"pw-in-url",
    ):
        assert secret not in raw


def test_counts_under_token_names_are_stored_and_tokens_are_not(daemon: DaemonProcess) -> None:
    tokens = {
        "token": "tok-canary-abc123",
        "access_token": "ya29.canaryAccess",
        "api_token": "canary-api-0123",
        "x-auth-token": "CanaryAuth0123456789",
    }
    counts = {
        "max_tokens": 4096,
        "max_token": "4096",
        "cached_token": "4096",
        "reasoning_token": 812,
        "token_limit": "8192",
        "error": "max_token=4096 is over the model's limit",
    }
    post_events(daemon.http_url(), [{"event": "llm.call", "properties": {**counts, **tokens}}])
    (row,) = daemon.export()
    assert row["properties"] == {**counts, **dict.fromkeys(tokens, "[secret]")}
    raw = (
        daemon.database.read_bytes() + daemon.database.with_name("buffer.sqlite3-wal").read_bytes()
    )
    for token in tokens.values():
        assert token.encode() not in raw


def test_the_posthog_sdk_captures_into_the_buffer(daemon: DaemonProcess) -> None:
    client = posthog.Posthog(
        "phc_local_test_key", host=daemon.http_url(), sync_mode=True, gzip=True, max_retries=0
    )
    for i in range(20):
        client.capture(
            "sdk.event", distinct_id="alice@example.com", properties={"i": i, "plan": "pro"}
        )
    client.flush()
    client.shutdown()
    rows = wait_for_rows(daemon, 20) and daemon.export()
    assert sorted(r["properties"]["i"] for r in rows) == list(range(20))
    assert all(r["transport"] == "posthog" and r["event"] == "sdk.event" for r in rows)
    assert all("distinct_id" not in r["properties"] for r in rows)
    assert b"alice@example.com" not in daemon.database.read_bytes()
    assert b"phc_local_test_key" not in daemon.database.read_bytes()
    assert rows[0]["agent"] == "posthog-python"


def test_an_allowlist_of_stored_names_keeps_what_a_shim_sends_by_the_short_name() -> None:
    # The buffer shows `gen_ai.request.model`; a shim sends `model`, renamed after this.
    allow = Allowlist(None, frozenset({"gen_ai.request.model", "gen_ai.usage.input_tokens"}))
    sent = {"model": "gpt-4o", "tokens_in": 10, "prompt_text": "x", "gen_ai.request.model": "m"}
    kept = allow(Event("llm.call", sent, None, None, None))
    assert kept is not None
    assert kept.properties == {"model": "gpt-4o", "tokens_in": 10, "gen_ai.request.model": "m"}
