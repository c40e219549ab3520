"""The rules that redact personal data and secrets inside one string. No I/O.

Each rule is a small `str -> str` function with its regexes compiled once at import; the
scrubber runs them in a loop over every name and every string value. A rule that finds
nothing returns its argument unchanged, so "did anything change" is one comparison.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable

from agent_telemetryd.privacy.secret_names import is_count

StringRule = Callable[[str], str]

EMAIL = "[email]"
IP = "[ip]"
SECRET = "[secret]"
USER = "[user]"
HOST = "[host]"
CUT_MARK = "…[cut]"

# Anchored at the start of a local-part run and bounded (RFC 5321: 64 for the local part,
# 63 a label): unbounded, a 30 KB value like "aaa…@bbb…" took seconds on the event loop.
# Two look-alikes are not addresses: `git@github.com` (the SSH user every code forge
# uses, nobody's mailbox) and `logo@2x.png` (an image at a pixel density).
_FILE_ENDINGS = r"png|jpe?g|gif|svg|webp|ico|bmp|tiff?|avif|pdf"
# `%40` is an `@` in a URL's query (`?email=bob%40example.com`).
_EMAIL = re.compile(
    r"(?<![A-Za-z0-9._%+-])(?!git@)[A-Za-z0-9._%+-]{1,64}(?:@|%40)"
    r"(?:[A-Za-z0-9-]{1,63}\.){1,8}"
    rf"(?!(?:{_FILE_ENDINGS})(?![A-Za-z]))[A-Za-z]{{2,63}}"
)
# Not inside a longer dotted number (`1.2.3.4.5` is a version), not glued to a word
# (`v1.2.3.4`), but a sentence's full stop after an address does not hide it.
_IPV4 = re.compile(
    r"(?<!\w)(?<!\d\.)(?:(?:25[0-5]|2[0-4]\d|1?\d?\d)\.){3}(?:25[0-5]|2[0-4]\d|1?\d?\d)"
    r"(?!\.?\d)"
)
# `version 1.2.3.4`, `build: 10.0.0.1`: a four-part version number, not an address.
_VERSION_BEFORE = re.compile(r"(?i:\b(?:version|ver|release|build|v)\.?[\s:=]*)$")
# Full and compressed IPv6 forms with at least two groups around a `::`, or eight groups;
# not `::1`, this machine, which identifies nobody.
_IPV6 = re.compile(
    r"(?<![\w:])(?:(?:[0-9A-Fa-f]{1,4}:){7}[0-9A-Fa-f]{1,4}"
    r"|(?:[0-9A-Fa-f]{1,4}:){1,7}:(?:[0-9A-Fa-f]{1,4}(?::[0-9A-Fa-f]{1,4}){0,6})?"
    r"|::(?!1(?![\w:]))(?:[0-9A-Fa-f]{1,4}:){0,6}[0-9A-Fa-f]{1,4})(?![\w:])"
)
# Home directories on Linux, macOS and Windows, whoever's they are.
_HOME = re.compile(r"(?:/home/|/Users/|[A-Za-z]:\\Users\\)[^/\\\s\"']+")
# Tokens their issuers mark with a prefix. All start at a word boundary: one `\b` in front
# of the group lets the scan skip every position inside a word with a single test.
_PREFIXED_TOKENS = (
    r"sk-(?:ant-|proj-|live-|test-)?[A-Za-z0-9_-]{16,}",  # OpenAI, Anthropic
    r"[rs]k_(?:live|test)_[A-Za-z0-9]{16,}",  # Stripe secret and restricted keys
    r"whsec_[A-Za-z0-9]{16,}",  # Stripe webhook secret
    r"gh[pousr]_[A-Za-z0-9]{30,}",  # GitHub tokens
    r"github_pat_[A-Za-z0-9_]{20,}",
    r"xox[abposr]-[A-Za-z0-9-]{10,}",  # Slack
    r"xapp-[A-Za-z0-9-]{10,}",
    r"(?:AKIA|ASIA)[0-9A-Z]{16}\b",  # AWS access key id (long-lived, temporary)
    r"AIza[0-9A-Za-z_-]{35}(?![0-9A-Za-z_-])",  # Google API key
    r"ph[cx]_[A-Za-z0-9]{20,}",  # PostHog keys
    r"glpat-[A-Za-z0-9_-]{20,}",  # GitLab
    r"eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}",  # JWT
    r"npm_[A-Za-z0-9]{36}\b",  # npm
    r"pypi-AgE[A-Za-z0-9_-]{50,}",  # PyPI upload token (a macaroon)
    r"hf_[A-Za-z]{30,}\b",  # Hugging Face
    r"SG\.[A-Za-z0-9_-]{16,32}\.[A-Za-z0-9_-]{16,64}",  # SendGrid
    r"gsk_[A-Za-z0-9]{40,}",  # Groq
    r"xai-[A-Za-z0-9]{60,}",  # xAI
    r"r8_[A-Za-z0-9]{37}\b",  # Replicate
    r"pplx-[A-Za-z0-9]{40,}",  # Perplexity
    r"hooks\.slack\.com/(?:services|workflows|triggers)/[A-Za-z0-9/_-]{16,}",  # webhooks
    r"discord(?:app)?\.com/api/webhooks/\d+/[A-Za-z0-9_-]{20,}",
    r"(?i:bearer\s+)[A-Za-z0-9._~+/=-]{8,}",
)
# Three patterns, not one alternation of them: Python's regex engine tries every branch at
# every position of a text, and apart the two with a fixed part run only on a text that
# holds it. 0.4 of the time of the one pattern on short values, 0.7 on long texts.
_PRIVATE_KEY_BLOCK = re.compile(
    r"-----BEGIN [A-Z ]*PRIVATE KEY(?: BLOCK)?-----[\s\S]*?"
    r"(?:-----END [A-Z ]*PRIVATE KEY(?: BLOCK)?-----|$)"
)
_TOKEN_SHAPES = re.compile(r"\b(?:" + "|".join(_PREFIXED_TOKENS) + ")")
# User optional; the password runs to the authority's last `@`, since one left unescaped
# in it (`redis://:p@ss@host`) is common and the host never holds one.
_URL_PASSWORD = re.compile(r"(?<=://)[^/?#\s:@]*:[^/?#\s]+(?=@)")
# A secret after its name: `?token=…` in a URL, `PGPASSWORD=…`, `SECRET_KEY=…`,
# `"api_key": "…"` (also as JSON inside a JSON string: `\\"api_key\\": \\"…\\"`),
# `Authorization: Basic …`, `--password …`. The name stays, so the text still says what was
# there. Each pattern starts at a fixed word or just after `?`/`&`, so the scan stays
# linear. Not after a `:` (`arn:aws:secretsmanager:…:secret:db` names a secret, it is not
# one).
_SECRET_ASSIGNMENT = re.compile(
    r"(?P<name>"
    r"(?<=[?&#;])[\w.-]*(?i:key|token|secret|pass(?:word|wd)?|pwd|sig|signature|auth"
    r"|credentials?|session)="
    r"|(?<!:)(?i:password|passwd|passphrase|pwd|secret(?:[_-]?key(?:[_-]?base)?)?|token"
    r"|(?:api|access|private|secret|signing|encryption|master|account)[_-]?key|credentials?)"
    r"(?:\\?[\"'])?\s*[:=]\s*(?:\\?[\"'])?"
    r"|(?i:authorization[\"']?\s*[:=]\s*[\"']?(?:(?:basic|bearer|digest|negotiate|token)\s+)?)"
    r"|--(?i:password|passwd|token|secret|client-secret|api-key|apikey|access-token"
    r"|auth-token)\s+(?!-)"
    r")(?P<value>(?:[^\s\"'&#<>\\]|\\(?![\"']))+)"
)
# What logs and schemas write in place of a secret: `password: required`, `token=null`,
# and references to where it is kept: `api_key=${OPENAI_API_KEY}`, `secret=%APP_SECRET%`.
_REFERENCE_STARTS = ("$", "%", "{{", "<")
_PLACEHOLDERS = frozenset(
    {"required", "optional", "null", "none", "nil", "true", "false", "missing", "empty",
     "invalid", "unset", "set", "redacted", "hidden", "***", "****", "xxx", "<redacted>",
     SECRET}
)  # fmt: skip


def _keep_name(match: re.Match[str]) -> str:
    value = match.group("value")
    if value.lower().strip(",;)") in _PLACEHOLDERS or value.startswith(_REFERENCE_STARTS):
        return match.group()
    name = match.group("name")
    # A count after a name that says `token` (`max_token=4096`, `token: 12`) is no secret.
    if "token" in name.lower() and is_count(value.rstrip(",;)]}")):
        return match.group()
    return name + SECRET


# Every name above contains one of these, and each pattern a `=`, `:` or `--`: a text
# without them is not searched, which halves the cost of a long text not in the cache.
_ASSIGNMENT_WORDS = ("key", "token", "secret", "pass", "pwd", "sig", "auth", "credential",
                     "session")  # fmt: skip


def redact_secrets(text: str) -> str:
    # The key block first: it takes the tokens inside it along.
    if "-----BEGIN " in text:
        text = _PRIVATE_KEY_BLOCK.sub(SECRET, text)
    text = _TOKEN_SHAPES.sub(SECRET, text)
    if "://" in text:
        text = _URL_PASSWORD.sub(SECRET, text)
    if "=" in text or ":" in text or "--" in text:
        lowered = text.lower()
        if any(word in lowered for word in _ASSIGNMENT_WORDS):
            text = _SECRET_ASSIGNMENT.sub(_keep_name, text)
    return text


# A bare AWS secret access key has no prefix to find it by: 40 characters of base64's
# alphabet. Three tests keep other 40-character runs, each measured against the labelled
# corpus in tests/scrub_corpus.py and against 100,000 random keys:
# - it mixes upper and lower case (git object names are hex in one case);
# - it looks random: Shannon entropy of at least 4.2 bits a character (random keys score
#   4.25 and up; `aaaaBBBB1111…` and repeated patterns score less);
# - it is not made of words: at most 70% of it in runs like `Word` or `word` of four or more
#   letters (random keys: 55% at the 99.9th percentile; identifiers and paths such as
#   `AbstractSingletonProxyFactoryBean2Config`: 75% and more).
# What it still takes: random 40-character identifiers and 30 bytes of base64-encoded data,
# which nothing in the text tells from a key.
_BARE_AWS_SECRET = re.compile(r"(?<![A-Za-z0-9/+=])[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+=])")
ENTROPY_BITS_FLOOR = 4.2
WORDS_SHARE_CEILING = 0.7
_WORD_RUN = re.compile(r"[A-Za-z][a-z]{3,}")


def _entropy_bits(text: str) -> float:
    size = len(text)
    return -sum(n / size * math.log2(n / size) for n in Counter(text).values())


def looks_like_bare_aws_secret(candidate: str) -> bool:
    if candidate.islower() or candidate.isupper():
        return False
    in_words = sum(len(word) for word in _WORD_RUN.findall(candidate))
    if in_words > WORDS_SHARE_CEILING * len(candidate):
        return False
    return _entropy_bits(candidate) >= ENTROPY_BITS_FLOOR


def _secret_if_random(match: re.Match[str]) -> str:
    return SECRET if looks_like_bare_aws_secret(match.group()) else match.group()


def redact_bare_aws_secrets(text: str) -> str:
    return _BARE_AWS_SECRET.sub(_secret_if_random, text) if len(text) >= 40 else text


def redact_emails(text: str) -> str:
    return _EMAIL.sub(EMAIL, text) if "@" in text or "%40" in text else text


def _address_unless_version(match: re.Match[str]) -> str:
    # This machine (127.x, 0.0.0.0) identifies nobody and says where a service listens.
    if match.group().startswith("127.") or match.group() == "0.0.0.0":
        return match.group()
    before = match.string[max(0, match.start() - 12) : match.start()]
    return match.group() if _VERSION_BEFORE.search(before) else IP


def redact_ips(text: str) -> str:
    text = _IPV4.sub(_address_unless_version, text) if "." in text else text
    return _IPV6.sub(IP, text) if ":" in text else text


_URL_ENDS = re.compile(r"[\s\"'<>()\[\],=]")


def _home_unless_url_path(match: re.Match[str]) -> str:
    # `https://example.com/home/about` is a page, not anyone's home folder; in
    # `file:///home/bob` the path starts right after the scheme and is one. Looking back a
    # bounded way keeps a text of many `/home/` linear.
    text, start = match.string, match.start()
    scheme = text.rfind("://", max(0, start - 256), start)
    if scheme < 0 or scheme + 3 == start or _URL_ENDS.search(text, scheme + 3, start):
        return "~"
    return match.group()


def home_paths_rule(own_home: str | None = None) -> StringRule:
    """Home directories become `~`: this user's, and any /home/NAME or /Users/NAME."""
    own = own_home.rstrip("/") if own_home and own_home not in ("/", "") else None

    def rule(text: str) -> str:
        if own and own in text:
            text = text.replace(own, "~")
        # Every home the pattern finds has one of these in it; most texts have neither.
        if "/home/" in text or "Users" in text:
            return _HOME.sub(_home_unless_url_path, text)
        return text

    return rule


# Names a machine has without anyone choosing them (and systems' defaults): they say
# nothing of whose it is, and `Ubuntu 24.04` in a text is the system, not the machine.
_UNNAMED_HOSTS = frozenset(
    {"localhost", "localhost.localdomain", "localhost6", "ubuntu", "debian", "fedora",
     "raspberrypi", "archlinux", "alpine", "kali", "centos"}
)  # fmt: skip
# Shorter, a name is a word or an abbreviation of many texts (`vm`, `pc`), and masking it
# everywhere would take those words from every event for no one's privacy.
MIN_HOST_CHARS = 3


def host_names(own_host: str) -> tuple[str, ...]:
    """The spellings of this machine's name a text may hold, longest first: the name as the
    OS gives it and its first label (`janes-mbp` of `janes-mbp.local`); none for a name
    nobody chose or one shorter than MIN_HOST_CHARS."""
    name = own_host.strip().rstrip(".")
    first = name.split(".", 1)[0]
    if name.lower() in _UNNAMED_HOSTS or first.lower() in _UNNAMED_HOSTS:
        return ()
    if len(first) < MIN_HOST_CHARS:
        return ()
    return (name, first) if first != name else (name,)


def host_name_rule(own_host: str) -> StringRule | None:
    """This machine's name becomes `[host]`, whatever its case, as a whole name: not
    inside a longer one (`janes-mbp-2`, `xjanes-mbp`), but before a domain (`.local`) or
    after a user (`jane@janes-mbp`). Laptops are named after their owners ("Jane's MacBook
    Pro" is `Janes-MacBook-Pro`), and every OpenTelemetry resource with a host detector and
    many agents' events carry the name. None when the machine has no chosen name."""
    names = host_names(own_host)
    if not names:
        return None
    pattern = re.compile(
        r"(?<![A-Za-z0-9_-])(?i:" + "|".join(map(re.escape, names)) + r")(?![A-Za-z0-9_-])"
    )
    # The shortest spelling is in every text the pattern finds: most texts are ruled out
    # by one search in C.
    shortest = names[-1].lower()

    def rule(text: str) -> str:
        if shortest not in text.lower():
            return text
        return pattern.sub(HOST, text)

    return rule


def cut_rule(max_chars: int) -> StringRule:
    def rule(text: str) -> str:
        if len(text) <= max_chars:
            return text
        return text[: max_chars - len(CUT_MARK)] + CUT_MARK

    return rule


# What `untouched_test` refuses: every start of a token in `_PREFIXED_TOKENS` that can be
# written in its alphabet (the others need a `.` or a space), cut shorter where that is
# simpler (`gh` for `gh[pousr]_`, `ph` for `ph[cx]_`, `xox` for `xox[abposr]-`); found
# anywhere in the text, not only at a word's start.
_TOKEN_STARTS = (
    "sk-", "sk_", "rk_", "whsec_", "gh", "github_pat_", "xox", "xapp-", "AKIA", "ASIA",
    "AIza", "ph", "glpat-", "npm_", "pypi-", "hf_", "gsk_", "xai-", "r8_", "pplx-",
)  # fmt: skip
# The longest text the test passes: a bare AWS secret is 40 characters.
_UNTOUCHED_MAX = 39


def untouched_test(
    max_chars: int, own_home: str | None, own_host: str = ""
) -> Callable[[str], bool] | None:
    """A test that is true only of texts `default_scrubber`'s rules all keep as they are,
    so the rules need not run on them: short texts of letters, digits, `_` and `-` with no
    token's start in them (ids such as `chatcmpl-7-00000001`) and not this machine's name
    (`own_host`) in any case. None when `own_home`, as `home_paths_rule` reads it, has no
    path separator in it (a text of that alphabet could then hold it).

    Why no rule can change such a text (the rules' own requirements):
    - `redact_secrets`: a key block needs `-----BEGIN ` (a space); a URL's password `://`;
      a secret after its name `=` or `:`, or for `--password value` a space; each token
      shape needs a `.` or a space (JWT, SendGrid, Slack's webhooks, `bearer`) or starts
      with one of `_TOKEN_STARTS`, which the test refuses anywhere in the text.
    - `redact_bare_aws_secrets`: changes only texts of 40 characters or more.
    - `redact_emails`: needs `@` or `%40`.
    - `home_paths_rule`: the own home has a `/` or `\\` in it; the other homes' pattern
      needs `/` or `\\`.
    - `redact_ips`: an IPv4 address needs `.`, an IPv6 one `:`.
    - `host_name_rule`: needs the machine's name (its first label), which the test
      refuses anywhere in the text, whatever its case.
    - `cut_rule`: changes only texts longer than `max_chars`.
    """
    # The own home as `home_paths_rule` reads it.
    own = own_home.rstrip("/") if own_home and own_home not in ("/", "") else None
    if own is not None and "/" not in own and "\\" not in own:
        return None
    longest = min(_UNTOUCHED_MAX, max_chars)
    of_alphabet = re.compile(rf"[A-Za-z0-9_-]{{0,{longest}}}").fullmatch
    # Two searches: one pattern that tests for the starts at each character of the
    # alphabet costs twice as much.
    names = host_names(own_host)
    token_start = (
        re.compile(_TOKEN_START.pattern + "|(?i:" + re.escape(names[-1]) + ")").search
        if names
        else _TOKEN_START.search
    )

    def untouched(text: str) -> bool:
        return of_alphabet(text) is not None and token_start(text) is None

    return untouched


_TOKEN_START = re.compile("|".join(map(re.escape, _TOKEN_STARTS)))
