"""The scrubber: secret-named properties lose their strings, secret shapes are redacted
wherever they sit in a string, names are scrubbed like values, and LLM token counts stay as
they are."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent_telemetryd.events import Event
from agent_telemetryd.privacy.scrub import default_scrubber
from agent_telemetryd.privacy.secret_names import (
    ORDINARY,
    SECRET_IF_CREDENTIAL,
    SECRET_NAME,
    TOKEN_NAME,
    classify_key,
)
from agent_telemetryd.privacy.text_rules import SECRET

SCRUB = default_scrubber(max_string_chars=4096, own_home="/home/runner")


def scrub(properties: dict[str, object]) -> dict[str, object]:
    return SCRUB(Event("e", properties, None, None, None)).properties


def scrubbed(value: str) -> object:
    return scrub({"v": value})["v"]


def test_the_reported_secrets_are_redacted() -> None:
    """Each of these came out of the scrubber unchanged before."""
    properties = {
        "aws_secret_access_key": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        "secret_key": "9f8e7d6c5b4a39281706f5e4d3c2b1a0",
        "password": ["hunter2"],
        "api_key": "12345678901234",
        "openai_key": "abcdefghijklmnopqrstuvwxyz012345",
    }
    assert scrub(properties) == {**dict.fromkeys(properties, SECRET), "password": [SECRET]}


@pytest.mark.parametrize(
    "key",
    [
        "password", "DB_PASSWORD", "dbPassword", "user.passwd", "passphrase", "pwd",
        "secret", "client_secret", "clientSecret", "AWS_SECRET_ACCESS_KEY",
        "awsSecretAccessKey", "api_key", "apiKey", "API-KEY", "x-api-key", "apikey",
        "access_key", "accessKey", "private_key", "privateKey", "credential",
        "credentials", "cookie", "Set-Cookie", "bearer", "signature", "db_pass", "creds",
    ],
)  # fmt: skip
def test_secret_named_keys_lose_their_strings_and_keep_other_types(key: str) -> None:
    assert classify_key(key) == SECRET_NAME
    for value in ("hunter2", "basic", "x"):
        assert scrub({key: value}) == {key: SECRET}
    assert scrub({key: ["a", 7, {"nested": "x"}]}) == {key: [SECRET, 7, {"nested": SECRET}]}
    for kept in (1234, 12.5, True, False, None, ""):
        value = scrub({key: kept})[key]
        assert value == kept and type(value) is type(kept)


@pytest.mark.parametrize(
    "key",
    ["token", "access_token", "api_token", "refreshToken", "id_token", "csrftoken",
     "X-Auth-Token", "x-auth-token", "auth_token", "cached_token", "reasoning_token"],
)  # fmt: skip
def test_token_named_keys_lose_every_string_but_a_count(key: str) -> None:
    """No token is a short run of digits: `cached_token: "4096"` is a count, kept."""
    assert classify_key(key) == TOKEN_NAME
    for value in ("hunter2", "basic", "x", "ya29.a0AfH6SMB", "1234567890", "-12", "4 096"):
        assert scrub({key: value}) == {key: SECRET}, value
    for count in ("4096", "0", "123456789"):
        assert scrub({key: count}) == {key: count}
    assert scrub({key: ["a", "12", {"nested": "x"}]}) == {key: [SECRET, "12", {"nested": SECRET}]}
    for kept in (4096, 12.5, True, None, ""):
        value = scrub({key: kept})[key]
        assert value == kept and type(value) is type(kept)


@pytest.mark.parametrize(
    "key",
    ["key", "KEY", "auth", "Authorization", "oauth", "session_id", "sessionId", "SESSIONID",
     "license_key", "openai_key", "stripe_key", "hotkey"],
)  # fmt: skip
def test_names_that_may_hold_a_credential_lose_only_credential_shaped_strings(key: str) -> None:
    assert classify_key(key) == SECRET_IF_CREDENTIAL
    for credential in ("hunter2hunter2", "a1b2c3d4e5f6", "dXNlcjpwYXNzd29yZA==",
                       "Basic dXNlcjpwYXNzd29yZA==", "abcdefghijABCDEFGHIJ",
                       # A scheme's credential, however short: `user:pass`, `bob:pw`.
                       "Basic dXNlcjpwYXNz", "basic Ym9iOnB3", "Bearer hunter2",
                       "Token abcdefgh"):  # fmt: skip
        assert scrub({key: credential}) == {key: SECRET}, credential
    for plain in ("value", "basic", "oauth2", "Bearer", "user_id", "ctrl+shift+p",
                  "123e4567-e89b-12d3-a456-426614174000"):  # fmt: skip
        assert scrub({key: plain}) == {key: plain}, plain
    assert scrub({key: "mail bob@example.com"}) == {key: "mail [email]"}


@pytest.mark.parametrize(
    "key",
    [
        "tokens", "tokens_in", "tokens_out", "input_tokens", "output_tokens",
        "total_tokens", "max_tokens", "token_count", "prompt_tokens",
        "completion_tokens", "inputTokens", "maxTokens", "tokenCount", "max_token",
        "cached_tokens", "reasoning_tokens", "tokenizer", "author", "authors", "cwd",
        "session", "keyboard", "key_id", "passes", "duration_ms", "model", "status",
        "tool", "error", "passwordless", "token_type", "password_policy", "secret_name",
        "auth_method", "api_key_env", "cache_key", "public_key", "signature_algorithm",
    ],
)  # fmt: skip
def test_ordinary_keys_and_token_counts_are_kept(key: str) -> None:
    assert classify_key(key) == ORDINARY
    assert scrub({key: 812}) == {key: 812}
    assert scrub({key: "search"}) == {key: "search"}
    assert scrub({key: "a1b2c3d4e5f6g7h8"}) == {key: "a1b2c3d4e5f6g7h8"}


def test_a_version_is_not_an_address_under_a_version_name() -> None:
    assert scrub({"version": "1.2.3.4", "sdk_version": "v10.0.0.1", "peer": "10.0.0.1"}) == {
        "version": "1.2.3.4",
        "sdk_version": "v10.0.0.1",
        "peer": "[ip]",
    }
    assert scrubbed("running version 1.2.3.4 on 10.0.0.1.") == "running version 1.2.3.4 on [ip]."


def test_an_empty_secret_stays_empty() -> None:
    """None or "" tells that no password was given, and gives nothing away."""
    assert scrub({"password": None, "token": ""}) == {"password": None, "token": ""}


def test_ordinary_keys_still_get_the_value_rules() -> None:
    assert scrub(
        {
            "user": "alice@example.com",
            "cwd": "/home/alice/src",
            "peer": "10.1.2.3",
            "note": "key ghp_" + "a" * 36,
            "tokens_in": 10,
            "nested": {"api_key": "x", "list": ["bob@corp.io"]},
        }
    ) == {
        "user": "[email]",
        "cwd": "~/src",
        "peer": "[ip]",
        "note": "key [secret]",
        "tokens_in": 10,
        "nested": {"api_key": SECRET, "list": ["[email]"]},
    }


A = "aB3dE5fG7hJ9kL1mN3pQ5rS7tU9vW1xY"  # 32 characters of key-looking text
TOKENS = [
    "sk-" + A,  # OpenAI
    "sk-proj-" + A,
    "sk-ant-api03-" + A,  # Anthropic
    "ghp_" + A + "abcd",  # GitHub
    "gho_" + A + "abcd",
    "github_pat_11ABCDEFG0_" + A,
    "xoxb-1234567890-" + A,  # Slack
    "xoxp-1234567890-" + A,
    "xoxo-1234567890-" + A,
    "xoxa-1234567890-" + A,
    "xoxs-1234567890-" + A,
    "AKIAIOSFODNN7EXAMPLE",  # AWS
    "ASIAIOSFODNN7EXAMPLE",
    "AIzaSyA-" + A[:31],  # Google: 35 after AIza
    "sk_live_" + A,  # Stripe
    "rk_live_" + A,
    "sk_test_" + A,
    "phc_" + A,  # PostHog
    "phx_" + A,
    "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9",  # JWT
    "Bearer " + A,
    "bearer abc123def",
    "gsk_" + A + A[:20],  # Groq
    "xai-" + A + A + A[:16],  # xAI
    "r8_" + A + A[:5],  # Replicate
    "pplx-" + A + A[:16],  # Perplexity
    "-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA\n-----END RSA PRIVATE KEY-----",
    "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXk\n-----END OPENSSH PRIVATE KEY-----",
    "-----BEGIN PGP PRIVATE KEY BLOCK-----\nlQOYBF\n-----END PGP PRIVATE KEY BLOCK-----",
]


@pytest.mark.parametrize("token", TOKENS)
def test_token_shapes_are_redacted_alone_and_inside_text(token: str) -> None:
    assert scrubbed(token) == SECRET
    assert scrubbed(f"export X={token} # from ~/.env") == f"export X={SECRET} # from ~/.env"
    assert scrubbed(f'{{"header": "{token}"}}') == f'{{"header": "{SECRET}"}}'


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("https://api.x.test/v1?password=hunter2&q=1", "https://api.x.test/v1?password=[secret]&q=1"),
        ("https://x.test/?token=abc123&q=1", "https://x.test/?token=[secret]&q=1"),
        ("https://maps.x.test/?key=abc&z=1", "https://maps.x.test/?key=[secret]&z=1"),
        ("/a?api_key=abc&client_secret=d&p=2", "/a?api_key=[secret]&client_secret=[secret]&p=2"),
        ("s3?X-Amz-Credential=a%2Fb&x=1", "s3?X-Amz-Credential=[secret]&x=1"),
        ("s3?x=1&X-Amz-Signature=0a1b", "s3?x=1&X-Amz-Signature=[secret]"),
        ("https://x.test/cb#access_token=abc&state=2", "https://x.test/cb#access_token=[secret]&state=2"),
        ("clone https://alice:hunter2@git.x.test/r.git", "clone https://[secret]@git.x.test/r.git"),
        ("postgres://app:s3cr3t@db.internal:5432/prod", "postgres://[secret]@db.internal:5432/prod"),
        ("PGPASSWORD=hunter2 psql", "PGPASSWORD=[secret] psql"),
        ("mysql --password=hunter2 -u root", "mysql --password=[secret] -u root"),
        ('{"api_key": "abc123", "n": 1}', '{"api_key": "[secret]", "n": 1}'),
        ("Authorization: Basic dXNlcjpwYXNz", "Authorization: Basic [secret]"),
        ("Authorization: Bearer abc", "Authorization: Bearer [secret]"),
        ("Authorization: Bearer abcdefghijklmnopqrstu", "Authorization: [secret]"),
        # An `@` left unescaped in a URL's password: none of it is kept.
        ("redis://:p@ssw0rd@cache.internal:6379", "redis://[secret]@cache.internal:6379"),
        ("https://a:b@c@x.test/p@q", "https://[secret]@x.test/p@q"),
        # Framework and cloud keys named `…_KEY` (Django, Rails, Azure).
        ("SECRET_KEY=django-insecure-abc", "SECRET_KEY=[secret]"),
        ("export JWT_SECRET_KEY=xyz", "export JWT_SECRET_KEY=[secret]"),
        ("SECRET_KEY_BASE=0a1b2c", "SECRET_KEY_BASE=[secret]"),
        ("AccountKey=abc+def==", "AccountKey=[secret]"),
        ("signing_key: abc", "signing_key: [secret]"),
        # JSON inside a JSON string: the quotes are escaped.
        ('{\\"password\\": \\"hunter2\\"}', '{\\"password\\": \\"[secret]\\"}'),
    ],
)  # fmt: skip
def test_secrets_in_urls_and_assignments_are_redacted(raw: str, expected: str) -> None:
    assert scrubbed(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("failed: max_token=4096 is over the limit", "failed: max_token=4096 is over the limit"),
        ("https://x.test/v1?max_token=4096&q=1", "https://x.test/v1?max_token=4096&q=1"),
        ('{"max_token": 4096, "token": "abc123"}', '{"max_token": 4096, "token": "[secret]"}'),
        ("cached_token=12, token: 7", "cached_token=12, token: 7"),
        ("x-auth-token: abcDEF123456789", "x-auth-token: [secret]"),
        ("https://x.test/?token=12345678901234", "https://x.test/?token=[secret]"),
        ("password=1234", "password=[secret]"),
    ],
)  # fmt: skip
def test_a_count_after_a_token_name_in_text_is_kept_and_a_token_is_not(
    raw: str, expected: str
) -> None:
    assert scrubbed(raw) == expected


@pytest.mark.parametrize(
    "text",
    [
        "tokens: 5, tokens_in=10, max_tokens=4096",
        "the password is wrong",
        "version 1.2.3 at 10:30",
        "http://localhost:8080/path?q=1&page=2",
        "ask the key question",
        "skip-this-step-entirely-please",
        "secret_key_name=db-creds public_key=abc cache_key=abc",
        "https://x.test:8080/users/@alice",
    ],
)
def test_ordinary_text_is_left_alone(text: str) -> None:
    assert scrubbed(text) == text


def test_key_decisions_are_remembered() -> None:
    scrubber = default_scrubber()
    for _ in range(3):
        scrubber(
            Event("e", {"tokens_in": 1, "api_key": "x", "bob@example.com": 2}, None, None, None)
        )
    assert scrubber._ordinary_keys == {"tokens_in"}
    assert scrubber._special_keys == {
        "api_key": ("api_key", SECRET_NAME),
        "bob@example.com": ("[email]", ORDINARY),
    }


@given(st.text(max_size=40))
def test_a_secret_word_is_found_whatever_the_spelling_around_it(prefix: str) -> None:
    """Separators and case do not hide a secret word: snake, kebab, dotted or camel case."""
    word = "".join(c for c in prefix if c.isascii() and c.isalpha())[:10].lower() or "x"
    for key in (f"{word}_api_key", f"{word}-api-key", f"{word}.api.key", f"{word}ApiKey"):
        assert classify_key(key) != ORDINARY, key


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("write to bob@example.com today", "write to [email] today"),
        ("x.y+z@mail.example.co.uk", "[email]"),
        # Longer than an address can be (RFC 5321: 64 before the @): not an address. The
        # bound is what keeps a 30 KB "aaa…@bbb…" value linear (bench: ingest, hostile).
        ("a" * 65 + "@example.com", "a" * 65 + "@example.com"),
    ],
)
def test_email_addresses_are_bounded_as_the_rfc_bounds_them(text: str, expected: str) -> None:
    assert scrubbed(text) == expected


def test_event_names_get_the_value_rules_too() -> None:
    scrubber = default_scrubber()
    event = scrubber(Event("login by bob@example.com from 10.1.2.3", None, None, None, None))
    assert event.event == "login by [email] from [ip]"
    plain = Event("agent.run.completed", {"n": 1}, None, None, None)
    assert scrubber(plain).event == "agent.run.completed"


def test_property_names_are_scrubbed_at_every_depth() -> None:
    token = "sk-ant-api03-" + A
    assert scrub(
        {
            "bob@example.com": 1,
            token: 2,
            "/home/alice/notes.md": "opened",
            "nested": {"carol@example.com": {"10.1.2.3": True}, "list": [{token: "x"}]},
        }
    ) == {
        "[email]": 1,
        SECRET: 2,
        "~/notes.md": "opened",
        "nested": {"[email]": {"[ip]": True}, "list": [{SECRET: "x"}]},
    }


def test_keys_that_become_the_same_are_kept_apart() -> None:
    """Two addresses as keys, and a key already spelled like the marker: three values,
    three keys, whatever order they come in; a key that is already free stays as it is."""
    assert scrub({"bob@example.com": 1, "carol@example.com": 2, "[email]": 3}) == {
        "[email]#2": 1,
        "[email]#3": 2,
        "[email]": 3,
    }
    assert scrub({"[email]#2": 0, "a@example.com": 1, "b@example.com": 2}) == {
        "[email]#2": 0,
        "[email]": 1,
        "[email]#3": 2,
    }
    nested = scrub({"n": {"password": {"a@example.com": "x", "b@example.com": 5}}})
    assert nested == {"n": {"password": {"[email]": SECRET, "[email]#2": 5}}}


def test_the_source_name_is_scrubbed_like_the_event_name() -> None:
    scrubber = default_scrubber()
    for agent, expected in [
        ("bob@example.com", "[email]"),
        ("ghp_" + A + "abcd", SECRET),
        ("planner", "planner"),
        (None, None),
    ]:
        assert scrubber(Event("e", None, None, None, agent)).agent == expected


def test_one_function_scrubs_a_name_wherever_it_comes_from() -> None:
    scrubber = default_scrubber()
    assert scrubber.name("user.email=bob@example.com") == "user.email=[email]"
    assert scrubber.name("gen_ai.usage.input_tokens") == "gen_ai.usage.input_tokens"
    assert scrubber.properties({"a@example.com": 1, "x": {"api_key": "k"}}) == {
        "[email]": 1,
        "x": {"api_key": SECRET},
    }


_NAME_PARTS = st.sampled_from(
    ["bob@example.com", "a@b.io", "[email]", "[email]#2", "[secret]", "10.0.0.1", "[ip]",
     "ghp_" + A + "abcd", "tokens_in", "password", "~", "/home/zed", "x"]
)  # fmt: skip
_KEYS = st.lists(_NAME_PARTS, min_size=1, max_size=3).map("".join)
_TREES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8) | _NAME_PARTS,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(_KEYS, children, max_size=6),
    max_leaves=30,
)


def _shape(node: object) -> object:
    """The tree with its keys and strings taken out: what scrubbing must not change."""
    if isinstance(node, dict):
        return sorted((repr(_shape(v)) for v in node.values()), key=str)
    if isinstance(node, list):
        return [_shape(v) for v in node]
    return "str" if isinstance(node, str) else node


@given(st.dictionaries(_KEYS, _TREES, max_size=8))
def test_no_key_is_lost_or_merged_and_non_strings_are_untouched(properties: dict) -> None:
    """Every object keeps as many keys as it had, whatever they become, and every number,
    boolean and null keeps its place, type and value."""
    assert _shape(scrub(properties)) == _shape(properties)


# Names of every kind the scrubber tells apart (ordinary, a version, a secret, one that may
# hold a credential, one that is itself redacted) and values the rules keep or change,
# alone and in arrays: what a warm scrubber's shorter paths decide on.
_FLAT_NAMES = st.sampled_from(
    ["model", "gen_ai.response.finish_reasons", "otel.scope.version", "sdk_ver", "password",
     "auth", "session_id", "api_key", "bob@example.com", "tokens_in", "x"]
)  # fmt: skip
_FLAT_TEXTS = st.sampled_from(
    ["stop", "1.0", "1.2.3.4", "10.0.0.7", "v2.1.0-rc.1", "bob@example.com", "/home/zed/x",
     "ghp_" + A + "abcd", "abc123def456", "", "[secret]", "x" * 300]
) | st.text(max_size=6)  # fmt: skip
_FLAT_VALUES = _FLAT_TEXTS | st.integers() | st.floats(allow_nan=False) | st.booleans() | st.none()
_FLAT_PROPERTIES = st.dictionaries(
    _FLAT_NAMES, _FLAT_VALUES | st.lists(_FLAT_VALUES, max_size=3), max_size=6
)


@settings(max_examples=400, deadline=None)
@given(st.lists(_FLAT_PROPERTIES | st.dictionaries(_KEYS, _TREES, max_size=4), max_size=6))
def test_a_warm_scrubber_scrubs_as_a_fresh_one(batch: list[dict[str, object]]) -> None:
    """The scrubber remembers names and texts and takes a shorter path for what it has
    seen; the properties it gives back must be those a scrubber that saw nothing gives."""
    warm = default_scrubber(max_string_chars=64, own_home="/home/runner")
    for properties in batch:
        warm.properties(properties)  # seen once: its names and texts are remembered
    for properties in batch + [dict(reversed(p.items())) for p in batch]:
        fresh = default_scrubber(max_string_chars=64, own_home="/home/runner")
        assert warm.properties(properties) == fresh.properties(properties)


def test_an_authorization_header_keeps_no_credential_however_short() -> None:
    # OpenTelemetry's HTTP conventions record headers as arrays of their values.
    assert scrub({"http.request.header.authorization": ["Basic dXNlcjpwYXNz"]}) == {
        "http.request.header.authorization": [SECRET]
    }
    assert scrub({"headers": {"Authorization": "Bearer hunter2"}}) == {
        "headers": {"Authorization": SECRET}
    }
    assert scrub({"auth": "Basic"}) == {"auth": "Basic"}  # the scheme alone says how


def test_an_argument_after_an_option_named_like_a_secret_is_redacted() -> None:
    # A command line as an array: the option in one item, its secret in the next.
    assert scrub(
        {
            "argv": ["mysql", "--password", "hunter2", "-u", "root"],
            "nested": {"cmd": ["gh", "--token", "ghx0123456789", "--auth", "Basic Ym9iOnB3"]},
            "flags": ["--max-tokens", "4096", "--password-file", "pw.txt", "--token", "--verbose"],
        }
    ) == {
        "argv": ["mysql", "--password", SECRET, "-u", "root"],
        "nested": {"cmd": ["gh", "--token", SECRET, "--auth", SECRET]},
        "flags": ["--max-tokens", "4096", "--password-file", "pw.txt", "--token", "--verbose"],
    }


@pytest.mark.parametrize(
    "key",
    ["process.owner", "user.name", "process.real_user.name", "process.user.name", "enduser.id",
     "user.full_name", "username", "userName", "github_username"],
)  # fmt: skip
def test_a_persons_login_or_name_is_replaced_whatever_it_is(key: str) -> None:
    # OpenTelemetry's process detectors send the OS account as `process.owner`.
    assert scrub({key: "zed", "n": {key: "Zed Example"}}) == {key: "[user]", "n": {key: "[user]"}}
    assert scrub({key: 7, "other": None}) == {key: 7, "other": None}
    assert scrub({key: ""}) == {key: ""}


@pytest.mark.parametrize(
    "key", ["gen_ai.agent.name", "user.id", "user_agent.original", "tool.name", "usernames_count"]
)
def test_names_that_are_not_a_persons_login_are_kept(key: str) -> None:
    assert scrub({key: "planner"}) == {key: "planner"}


def test_a_value_named_by_its_neighbour_is_read_under_that_name() -> None:
    # Kubernetes' env, HAR's headers: the name in one entry, the value in the next.
    assert scrub(
        {
            "env": [
                {"name": "DB_PASSWORD", "value": "hunter2"},
                {"name": "LOG_LEVEL", "value": "debug"},
                {"name": "PASSWORD_LENGTH", "value": 12},
            ],
            "headers": [{"name": "Authorization", "value": "Basic Ym9iOnB3"}],
            "setting": {"key": "api_key", "value": "abc"},
            "owner": {"name": "process.owner", "value": "zed"},
        }
    ) == {
        "env": [
            {"name": "DB_PASSWORD", "value": SECRET},
            {"name": "LOG_LEVEL", "value": "debug"},
            {"name": "PASSWORD_LENGTH", "value": 12},
        ],
        "headers": [{"name": "Authorization", "value": SECRET}],
        "setting": {"key": "api_key", "value": SECRET},
        "owner": {"name": "process.owner", "value": "[user]"},
    }
    assert scrub({"name": "openai_api_key", "value": "x"}) == {
        "name": "openai_api_key",
        "value": SECRET,
    }
    assert scrub({"name": "auth", "value": "basic"}) == {"name": "auth", "value": "basic"}


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Janes-MacBook-Pro.local", "[host]"),
        ("janes-macbook-pro", "[host]"),
        ("JANES-MACBOOK-PRO.example.com", "[host].example.com"),
        ("jane@janes-macbook-pro:~$ make", "jane@[host]:~$ make"),
        ("built on Janes-MacBook-Pro, twice", "built on [host], twice"),
        # Other machines' names that only begin or end like it.
        ("janes-macbook-pro-2", "janes-macbook-pro-2"),
        ("old-janes-macbook-pro", "old-janes-macbook-pro"),
        ("janes-macbook-pro_backup", "janes-macbook-pro_backup"),
        ("janes-macbook", "janes-macbook"),
    ],
)  # fmt: skip
def test_this_machines_name_becomes_host_as_a_whole_name(raw: str, expected: str) -> None:
    scrubber = default_scrubber(own_home="/home/runner", own_host="Janes-MacBook-Pro.local")
    assert scrubber.text(raw) == expected
    assert scrubber.properties({raw: 1}) == {expected: 1}  # names are scrubbed too


@pytest.mark.parametrize(
    ("host", "text"),
    [("localhost", "localhost:8080"), ("ubuntu.example.internal", "Ubuntu 24.04 LTS"),
     ("vm", "the vm.max_map_count of the vm")],
)  # fmt: skip
def test_a_name_nobody_chose_or_too_short_to_be_anyones_is_kept(host: str, text: str) -> None:
    assert default_scrubber(own_home="/home/runner", own_host=host).text(text) == text
