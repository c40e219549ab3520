"""What a property's name says about its value. No I/O.

The name is split into words at `_`, `-`, `.`, spaces, camelCase and digits, so
`awsSecretAccessKey`, `x-api-key` and `DB_PASSWORD` read alike. Only strings can be
secrets: a number, boolean or null under any of these names keeps its type and value
(`passwordless: true`, `token_count: 12`), and under a name that says `token` so does a
count written as text (`cached_token: "4096"`): no token is a short run of digits.
"""

from __future__ import annotations

import re

ORDINARY = 0
SECRET_NAME = 1  # `password`, `client_secret`, `api_key`: every string under it is a secret
SECRET_IF_CREDENTIAL = 2  # `key`, `auth`, `license_key`: strings shaped like a credential
VERSION_NAME = 3  # `version`, `sdk_ver`: `1.2.3.4` there is a version, not an address
USER_NAME = 4  # `process.owner`, `user.name`: a person's login or name, whatever it is
TOKEN_NAME = 5  # `access_token`, `x-auth-token`: every string but a count (`is_count`)
# How much each kind hides. When a name's words say several kinds, or a container's name
# and a key's inside it (`credentials: {user, password}`), the one that hides most wins.
_STRENGTH = {
    ORDINARY: 0,
    VERSION_NAME: 1,
    SECRET_IF_CREDENTIAL: 2,
    USER_NAME: 3,
    TOKEN_NAME: 4,
    SECRET_NAME: 5,
}


def stronger(kind: int, other: int) -> int:
    """Of two kinds, the one that hides more."""
    return max(kind, other, key=_STRENGTH.__getitem__)


MAX_NAME_CHARS = 200
_WORD_BREAK = re.compile(
    r"[^A-Za-z0-9]+|(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])"
    r"|(?<=[A-Za-z])(?=[0-9])|(?<=[0-9])(?=[A-Za-z])"
)
# Secret wherever they appear in a word: `dbpassword`, `clientsecret`, `setcookie`; but a
# word that ends in `less` says a secret is absent (`passwordless`).
_SECRET_PARTS = ("secret", "password", "passwd", "passphrase", "credential", "cookie",
                 "signature", "bearer", "apikey", "accesskey", "privatekey")  # fmt: skip
# Secret only as a whole word: `pwd` but not `cwd`, `pass` but not `passes`.
_SECRET_WORDS = frozenset({"pwd", "pass", "creds"})
_SECRET_PAIRS = frozenset(
    (first, second)
    for first in ("api", "access", "private", "signing", "encryption", "master")
    for second in ("key", "keys")
)
# Names whose values are sometimes credentials and often not: `auth: "basic"`,
# `key: "value"`, `session_id: <a UUID naming a run>`.
_CREDENTIAL_WORDS = frozenset({"auth", "authorization", "oauth", "authn", "authz", "sessionid"})
_CREDENTIAL_PAIRS = frozenset({("session", "id")})
# `token` names a secret (`access_token`, `csrfToken`) unless the name counts tokens, as
# LLM telemetry does everywhere: `max_token`, `token_count`, `input_token`. The plural
# (`tokens`, `tokens_in`, `total_tokens`) never matches.
_TOKEN_COUNT_WORDS = frozenset(
    {"count", "counts", "num", "number", "limit", "limits", "max", "min", "total", "usage",
     "used", "remaining", "budget", "len", "length", "size", "rate", "per", "estimate",
     "in", "out", "input", "output", "prompt", "completion"}
)  # fmt: skip
# Keys that are not secret keys, whatever their value looks like.
_PLAIN_KEY_QUALIFIERS = frozenset(
    {"public", "publishable", "cache", "partition", "sort", "primary", "foreign",
     "idempotency", "routing", "lookup"}
)  # fmt: skip
# A word after the secret word that makes the value a fact *about* the secret:
# `token_type: "bearer"`, `password_policy: "strong"`, `secret_name: "db-creds"`,
# `auth_method: "oauth2"`. The value still gets every rule for text.
_ABOUT_WORDS = frozenset(
    {"type", "kind", "name", "names", "ref", "arn", "path", "file", "env", "var", "provider",
     "source", "policy", "format", "scheme", "method", "mode", "header", "param", "location",
     "length", "len", "size", "count", "expires", "expiry", "expiration", "ttl", "rotation",
     "version", "hint", "algorithm", "alg", "url", "uri", "endpoint", "domain", "strength",
     "store", "manager", "required", "enabled", "present", "set", "valid", "status", "error",
     "field"}
)  # fmt: skip
_VERSION_WORDS = frozenset({"version", "ver", "release", "build"})
# Names whose value is a person's login or name (OpenTelemetry's `process.owner`, which
# SDKs' process detectors fill with the OS account, `user.name`, `process.real_user.name`,
# `enduser.id`, `user.full_name`), read with separators and case dropped. No rule for
# text can tell a login from any other word, so the name is what finds it.
_USER_NAME_ENDINGS = ("username", "fullname", "processowner", "enduserid")
_NOT_NAME_CHARS = re.compile(r"[^a-z0-9]+")


def _secret_word(words: list[str], index: int, counts_tokens: bool) -> int:
    """How secret words[index] makes the name, given the words before it."""
    word = words[index]
    if word.endswith("less"):
        return ORDINARY
    pair = (words[index - 1], word) if index else None
    if word in _SECRET_WORDS or pair in _SECRET_PAIRS or any(p in word for p in _SECRET_PARTS):
        return SECRET_NAME
    if word.endswith("token") and not counts_tokens:
        return TOKEN_NAME
    if word in _CREDENTIAL_WORDS or pair in _CREDENTIAL_PAIRS:
        return SECRET_IF_CREDENTIAL
    if index == len(words) - 1 and word.endswith("key"):
        plain = index and words[index - 1] in _PLAIN_KEY_QUALIFIERS
        return ORDINARY if plain else SECRET_IF_CREDENTIAL
    return ORDINARY


def classify_key(key: str) -> int:
    """ORDINARY, VERSION_NAME, or how to treat the strings under a name that says secret."""
    # A name ends in what it names (`…_api_key`, `…_token_count`); past a few dozen words a
    # key is not a name, and reading only its end keeps a 30 KB key as cheap as a value.
    words = [w.lower() for w in _WORD_BREAK.split(key[-MAX_NAME_CHARS:]) if w and not w.isdigit()]
    kind, last_secret = ORDINARY, -1
    counts_tokens = not _TOKEN_COUNT_WORDS.isdisjoint(words)
    for index in range(len(words)):
        found = _secret_word(words, index, counts_tokens)
        if found:
            last_secret = index
            kind = stronger(kind, found)
    if kind and not _ABOUT_WORDS.intersection(words[last_secret + 1 :]):
        return kind
    if _NOT_NAME_CHARS.sub("", key[-MAX_NAME_CHARS:].lower()).endswith(_USER_NAME_ENDINGS):
        return USER_NAME
    if _VERSION_WORDS.intersection(words):
        return VERSION_NAME
    return ORDINARY


# What follows concerns names of SECRET_IF_CREDENTIAL kind only.
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_CREDENTIAL_CHARS = re.compile(r"[A-Za-z0-9_+/=.~-]+")
# The HTTP authentication schemes and their usual spellings: `auth: "oauth2"` says how,
# not with what.
_SCHEMES = frozenset(
    {"basic", "bearer", "digest", "negotiate", "ntlm", "kerberos", "oauth", "oauth1",
     "oauth2", "oidc", "saml", "saml2", "jwt", "mtls", "hmac", "apikey", "api_key", "token",
     "none", "anonymous", "sso", "ldap", "aws4-hmac-sha256"}
)  # fmt: skip


def _credential_word(word: str) -> bool:
    word = word.strip("\"'(),;")
    if len(word) < 8 or word.lower() in _SCHEMES or not _CREDENTIAL_CHARS.fullmatch(word):
        return False
    has_digit = any(c.isdigit() for c in word)
    has_letter = any(c.isalpha() for c in word)
    if has_digit and has_letter:
        return True
    return len(word) >= 20 and not word.islower() and not word.isupper()


# An HTTP `Authorization` value: a scheme, then what it carries. Whatever follows the
# scheme is the credential, however short or plain (`Basic dXNlcjpwYXNz` is `user:pass`).
_SCHEME_AND_CREDENTIAL = re.compile(
    r"\s*(?i:basic|bearer|token|negotiate|ntlm)\s+[A-Za-z0-9_+/=.~-]+\s*"
)


def looks_like_credential(text: str) -> bool:
    """A word in it mixes letters and digits (8+ characters, the alphabet of keys and
    base64), or is 20+ characters in mixed case, or it is a scheme and its credential as
    an `Authorization` header carries them; a canonical UUID is an identifier."""
    if _UUID.fullmatch(text):
        return False
    if _SCHEME_AND_CREDENTIAL.fullmatch(text):
        return True
    return any(_credential_word(word) for word in text.split())


# A count as text: digits alone, fewer than ten (under a billion). Tokens issued as
# credentials are long and mostly letters; a one-time code of six or eight digits, the one
# credential of this alphabet and length, is spent within minutes of being typed.
_COUNT = re.compile(r"[0-9]{1,9}")


def is_count(text: str) -> bool:
    return _COUNT.fullmatch(text) is not None


_VERSION = re.compile(r"[vV]?\d+(?:\.\d+){1,5}(?:[-+][0-9A-Za-z.-]+)?")


def is_version_number(text: str) -> bool:
    return _VERSION.fullmatch(text) is not None
