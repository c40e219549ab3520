"""The scrubber skips its rules for a text its untouched test passes (short ids of
letters, digits, `_` and `-`, such as every span's new response id). That is only right
if no rule can change such a text: here, for texts made of the rules' own alphabets, the
starts of every token shape and near misses of them, addresses, paths, assignments and
lengths around the limits, every text the test passes is kept as it is by every rule of
the default scrubber, whatever its cut length, home and machine name.
"""

from __future__ import annotations

import string

from hypothesis import given, settings
from hypothesis import strategies as st

from agent_telemetryd.privacy.scrub import Scrubber, default_scrubber
from agent_telemetryd.privacy.text_rules import redact_secrets, untouched_test

_ID_ALPHABET = string.ascii_letters + string.digits + "_-"
_TOKEN_STARTS = [
    "sk-", "sk-ant-", "sk-proj-", "sk_live_", "rk_test_", "whsec_", "ghp_", "gho_", "ghu_",
    "ghs_", "ghr_", "github_pat_", "xoxb-", "xoxp-", "xapp-", "AKIA", "ASIA", "AIza", "phc_",
    "phx_", "glpat-", "eyJ", "npm_", "pypi-AgE", "hf_", "SG.", "hooks.slack.com/services/",
    "Bearer ", "bearer\t", "gsk_", "xai-", "r8_", "pplx-",
]  # fmt: skip
# Each start with a letter changed, dropped or in the other case: what a prefix test
# written too narrowly would let through to a rule that still matches.
_NEAR_MISSES = sorted(
    {s[:i] + s[i + 1 :] for s in _TOKEN_STARTS for i in range(len(s))}
    | {s.swapcase() for s in _TOKEN_STARTS}
    | {s.replace("_", "-") for s in _TOKEN_STARTS}
    | {s.replace("-", "_") for s in _TOKEN_STARTS}
)
_OTHERS = [
    "alice@example.com", "bob%40example.org", "10.1.2.3", "fe80::1:2:3:4", "::1",
    "/home/carol", "/Users/dave", "C:\\Users\\erin", "Users", "~", "://", "u:p@h",
    "password=", "token:", "--password ", "--token x", "api_key", "-----BEGIN ", "=", ":",
    ".", "@", "%40", " ", "/", "\\", "?", "&", "#", "janes-macbook-pro", "JANES-MACBOOK-PRO",
    "vm", "VM", "build-01",
]  # fmt: skip
# A start (or a near miss of one) and a body long enough for the token it starts.
_TOKENS = st.builds(
    str.__add__,
    st.sampled_from(_TOKEN_STARTS) | st.sampled_from(_NEAR_MISSES),
    # Bodies in each token shape's own alphabet: upper case and digits (AWS), letters
    # (Hugging Face), letters and digits, and an id's.
    st.sampled_from(
        [
            string.ascii_uppercase + string.digits,
            string.ascii_letters,
            string.ascii_letters + string.digits,
            _ID_ALPHABET,
        ]
    ).flatmap(lambda alphabet: st.text(alphabet, min_size=8, max_size=36)),
)
_PIECES = (
    st.sampled_from(_TOKEN_STARTS + _NEAR_MISSES + _OTHERS)
    | _TOKENS
    | st.text(_ID_ALPHABET, max_size=40)
    | st.text(string.printable, max_size=8)
    | st.text(max_size=4)
)
_TEXTS = _TOKENS | st.lists(_PIECES, max_size=5).map("".join)
_HOMES = st.sampled_from(["/root", "/home/alice", "/Users/bob", "C:\\Users\\erin", "/"])
_HOSTS = st.sampled_from(["", "localhost", "vm", "Janes-MacBook-Pro.local", "build-01"])


@settings(max_examples=3000, deadline=None)
@given(
    text=_TEXTS,
    max_chars=st.sampled_from([8, 16, 39, 40, 64, 4096]),
    home=_HOMES,
    host=_HOSTS,
)
def test_a_text_the_untouched_test_passes_is_kept_by_every_rule(
    text: str, max_chars: int, home: str, host: str
) -> None:
    untouched = untouched_test(max_chars, home, host)
    assert untouched is not None
    if untouched(text):
        rules = default_scrubber(max_chars, own_home=home, own_host=host)._rules
        for rule in rules:
            assert rule(text) == text, (rule, text)


_ALNUM = string.ascii_letters + string.digits
# Every token shape that can be written in an id's alphabet within the test's 39
# characters: its starts, its body's alphabet and the body's lengths that fit.
_SHAPES = [
    (["sk-", "sk-ant-", "sk-proj-", "sk-live-", "sk-test-"], _ID_ALPHABET, 16, 31),
    (["sk_live_", "sk_test_", "rk_live_", "rk_test_"], _ALNUM, 16, 31),
    (["whsec_"], _ALNUM, 16, 33),
    (["ghp_", "gho_", "ghu_", "ghs_", "ghr_"], _ALNUM, 30, 35),
    (["github_pat_"], _ALNUM + "_", 20, 28),
    (["xoxa-", "xoxb-", "xoxp-", "xoxo-", "xoxs-", "xoxr-", "xapp-"], _ALNUM + "-", 10, 34),
    (["AKIA", "ASIA"], string.ascii_uppercase + string.digits, 16, 16),
    (["AIza"], _ID_ALPHABET, 35, 35),
    (["phc_", "phx_"], _ALNUM, 20, 35),
    (["glpat-"], _ID_ALPHABET, 20, 33),
    (["hf_"], string.ascii_letters, 30, 36),
]
_SHAPED_TOKENS = st.sampled_from(_SHAPES).flatmap(
    lambda shape: st.builds(
        str.__add__,
        st.sampled_from(shape[0]),
        st.text(shape[1], min_size=shape[2], max_size=shape[3]),
    )
)


@settings(max_examples=1000, deadline=None)
@given(token=_SHAPED_TOKENS, before=st.sampled_from(["", "x-", "id_", "a"]))
def test_no_token_of_an_ids_alphabet_is_passed(token: str, before: str) -> None:
    untouched = untouched_test(4096, "/root")
    assert untouched is not None
    assert redact_secrets(" " + token) != " " + token  # a token the rules redact
    assert not untouched(token)
    assert not untouched(before + token)


@settings(max_examples=300, deadline=None)
@given(texts=st.lists(_TEXTS, max_size=6))
def test_the_scrubber_keeps_and_redacts_what_it_would_without_the_test(
    texts: list[str],
) -> None:
    with_test = default_scrubber(64, own_home="/home/alice")
    without = Scrubber(with_test._rules)
    for text in texts:
        assert with_test.text(text) == without.text(text)


def test_ids_such_as_a_response_id_are_passed() -> None:
    untouched = untouched_test(4096, "/root")
    assert untouched is not None
    for text in ("chatcmpl-7-00000001", "conv-7-12", "resp_01HZX3", "", "x" * 39):
        assert untouched(text)
    for text in ("x" * 40, "a.b", "a:b", "a b", "a@b", "ghp_x", "é"):
        assert not untouched(text)


def test_a_home_without_a_separator_turns_the_test_off() -> None:
    # A text of an id's alphabet could hold such a home, which its rule replaces.
    assert untouched_test(4096, "alice") is None
    assert untouched_test(4096, "//") is None  # read as "", which is in every text
    assert untouched_test(4096, "/") is not None  # read as no home of its own
