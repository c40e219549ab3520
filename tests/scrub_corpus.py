"""A labelled corpus for the scrubber: real secret shapes and personal data, and the
look-alikes that telemetry is full of.

Secrets are generated from a fixed seed in the shapes their issuers use (prefix, alphabet,
length), so the file holds no real credential and every run sees the same corpus. A
`secret` case is caught when none of its canaries (the parts that identify the person or
grant access) is left anywhere in the scrubbed event; a `keep` case is kept when the
scrubbed properties and source equal the originals, types included.
"""

from __future__ import annotations

import base64
import json
import random
import string
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

ALNUM = string.ascii_letters + string.digits
UPPER_DIGITS = string.ascii_uppercase + string.digits
BASE64 = ALNUM + "+/"
URLSAFE = ALNUM + "-_"
HEX = "0123456789abcdef"


@dataclass(frozen=True)
class Case:
    label: str  # "secret" or "keep"
    kind: str  # what it is, for the figures by kind
    properties: dict[str, Any]
    canaries: tuple[str, ...] = ()
    agent: str | None = None
    # A look-alike the scrubber redacts on purpose, because nothing in the text tells it
    # from the real thing; it counts against precision and is listed in the test output.
    known_loss: bool = False
    expected: dict[str, Any] | None = field(default=None)  # exact result, where it matters


class _Maker:
    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)

    def chars(self, alphabet: str, n: int) -> str:
        return "".join(self.rng.choice(alphabet) for _ in range(n))

    def mixed(self, alphabet: str, n: int) -> str:
        """Random text of that alphabet holding each of its classes (upper case, lower case,
        digit), as keys of that length practically always do."""
        classes = [c for c in (str.isupper, str.islower, str.isdigit) if any(map(c, alphabet))]
        while True:
            text = self.chars(alphabet, n)
            if all(any(map(c, text)) for c in classes):
                return text

    def b64url(self, raw: bytes) -> str:
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    def jwt(self) -> str:
        header = self.b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
        sub = self.chars(string.digits, 10)
        payload = self.b64url(json.dumps({"sub": sub, "iat": 1_700_000_000}).encode())
        return f"{header}.{payload}.{self.b64url(self.rng.randbytes(32))}"

    def pem(self, label: str) -> str:
        body = base64.b64encode(self.rng.randbytes(96)).decode()
        lines = "\n".join(body[i : i + 64] for i in range(0, len(body), 64))
        return f"-----BEGIN {label}-----\n{lines}\n-----END {label}-----"


def _token_shapes(m: _Maker) -> Iterator[tuple[str, str]]:
    """(kind, token) for the shapes each issuer uses, three of each."""
    for _ in range(3):
        yield "aws_access_key_id", "AKIA" + m.chars(UPPER_DIGITS, 16)
        yield "aws_temporary_key_id", "ASIA" + m.chars(UPPER_DIGITS, 16)
        yield "github_classic", "ghp_" + m.mixed(ALNUM, 36)
        yield "github_oauth", "gho_" + m.mixed(ALNUM, 36)
        yield "github_app", "ghs_" + m.mixed(ALNUM, 36)
        pat = f"github_pat_11{m.mixed(UPPER_DIGITS, 20)}_{m.mixed(ALNUM, 59)}"
        yield "github_fine_grained", pat
        team, workspace = m.chars(string.digits, 12), m.chars(string.digits, 13)
        yield "slack_bot", f"xoxb-{team}-{workspace}-{m.mixed(ALNUM, 24)}"
        yield "slack_user", f"xoxp-{team}-{workspace}-{m.mixed(HEX, 32)}"
        yield "slack_app", f"xapp-1-A{m.chars(UPPER_DIGITS, 10)}-{workspace}-{m.chars(HEX, 64)}"
        hook = f"T{m.chars(UPPER_DIGITS, 8)}/B{m.chars(UPPER_DIGITS, 10)}/{m.mixed(ALNUM, 24)}"
        yield "slack_webhook", f"https://hooks.slack.com/services/{hook}"
        yield "stripe_secret", "sk_live_" + m.mixed(ALNUM, 24)
        yield "stripe_test", "sk_test_" + m.mixed(ALNUM, 99)
        yield "stripe_restricted", "rk_live_" + m.mixed(ALNUM, 24)
        yield "stripe_webhook", "whsec_" + m.mixed(ALNUM, 32)
        yield "openai_project", "sk-proj-" + m.mixed(URLSAFE, 124)
        yield "openai_legacy", "sk-" + m.mixed(ALNUM, 48)
        yield "openai_service", "sk-svcacct-" + m.mixed(URLSAFE, 64)
        yield "anthropic", f"sk-ant-api03-{m.mixed(URLSAFE, 93)}AA"
        yield "anthropic_admin", f"sk-ant-admin01-{m.mixed(URLSAFE, 93)}AA"
        yield "google_api", "AIza" + m.mixed(URLSAFE, 35)
        yield "gitlab", "glpat-" + m.mixed(URLSAFE, 20)
        yield "npm", "npm_" + m.mixed(ALNUM, 36)
        yield "huggingface", "hf_" + m.mixed(string.ascii_letters, 34)
        yield "pypi", "pypi-AgEIcHlwaS5vcmc" + m.mixed(URLSAFE, 60)
        yield "sendgrid", f"SG.{m.mixed(URLSAFE, 22)}.{m.mixed(URLSAFE, 43)}"
        yield "jwt", m.jwt()
        yield "groq", "gsk_" + m.mixed(ALNUM, 52)
        yield "xai", "xai-" + m.mixed(ALNUM, 80)
        yield "replicate", "r8_" + m.mixed(ALNUM, 37)
        yield "perplexity", "pplx-" + m.mixed(ALNUM, 48)
        webhook = f"{m.chars(string.digits, 18)}/{m.mixed(URLSAFE, 68)}"
        yield "discord_webhook", f"https://discord.com/api/webhooks/{webhook}"


_PEM_LABELS = ("RSA PRIVATE KEY", "EC PRIVATE KEY", "OPENSSH PRIVATE KEY", "PRIVATE KEY",
               "ENCRYPTED PRIVATE KEY", "PGP PRIVATE KEY BLOCK", "DSA PRIVATE KEY")  # fmt: skip
# Where a token turns up: alone, in a log line, a command, a JSON string, a header.
_CONTEXTS = (
    "{}",
    "using key {} for the request",
    "export API_TOKEN_VALUE={} && run",
    '{{"header": "{}"}}',
    "curl -H 'X-Custom: {}' https://api.example.test",
)


def secret_cases(m: _Maker) -> Iterator[Case]:
    for n, (kind, token) in enumerate(_token_shapes(m)):
        text = _CONTEXTS[n % len(_CONTEXTS)].format(token)
        yield Case("secret", kind, {"note": text}, (token,))
    for label in _PEM_LABELS:
        block = m.pem(label)
        body = block.splitlines()[1]
        yield Case("secret", "private_key_block", {"output": f"wrote key:\n{block}\n"}, (body,))
    for _ in range(6):
        token = m.mixed(URLSAFE + ".~", 40)
        yield Case("secret", "bearer", {"header": f"Bearer {token}"}, (token,))
        yield Case("secret", "bearer", {"log": f"sent Authorization: bearer {token}"}, (token,))
    yield from _credential_urls(m)
    yield from _secret_named(m)
    yield from _personal(m)
    yield from _names(m)


def bare_aws_secret_cases(m: _Maker) -> Iterator[Case]:
    """40 characters of base64 with nothing naming them: what the entropy rule is for."""
    yield Case(
        "secret", "aws_secret_bare", {"v": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"},
        ("wJalrXUtnFEMI",),
    )  # fmt: skip
    for n in range(11):
        key = m.mixed(BASE64, 40)
        text = ("{}", "creds {} loaded", "['{}']")[n % 3].format(key)
        yield Case("secret", "aws_secret_bare", {"v": text}, (key,))


def _credential_urls(m: _Maker) -> Iterator[Case]:
    for scheme, host in (("https", "git.example.test/r.git"), ("postgres", "db:5432/app"),
                         ("mongodb+srv", "cluster0.example.test/db"), ("amqp", "mq:5672"),
                         ("redis", "cache:6379/0"), ("ftp", "files.example.test/")):  # fmt: skip
        password = m.mixed(ALNUM, 14)
        user = "" if scheme == "redis" else "svc" + m.chars(string.digits, 3)
        url = f"{scheme}://{user}:{password}@{host}"
        yield Case("secret", "url_credentials", {"dsn": url}, (password,))
    for name in ("access_token", "api_key", "token", "sig", "X-Amz-Signature", "password",
                 "client_secret", "auth", "session", "apikey"):  # fmt: skip
        value = m.mixed(URLSAFE, 24)
        url = f"https://api.example.test/v1/items?page=2&{name}={value}&q=x"
        yield Case("secret", "url_query_secret", {"url": url}, (value,))
    value = m.mixed(ALNUM, 30)
    yield Case("secret", "url_fragment_secret", {"url": f"https://x.test/cb#access_token={value}"},
               (value,))  # fmt: skip


_ASSIGNMENTS = (
    "PGPASSWORD={} psql -h db", "mysql --password={} -u root", "export AWS_SECRET_ACCESS_KEY={}",
    '{{"api_key": "{}"}}', "client_secret: {}", "password = '{}'", "Authorization: Basic {}",
    "DATABASE_PASSWD={}", "secret={}", "--token {}", "--password {}", "access-key: {}",
    "private_key={}", 'credentials="{}"',
)  # fmt: skip
_SECRET_KEYS = (
    "password", "DB_PASSWORD", "dbPassword", "passwd", "passphrase", "pwd", "db_pass",
    "secret", "client_secret", "clientSecret", "aws_secret_access_key", "token",
    "access_token", "refreshToken", "id_token", "csrftoken", "X-Auth-Token", "api_key",
    "apiKey", "x-api-key", "private_key", "credentials", "cookie", "Set-Cookie", "signature",
    "bearer", "encryption_key", "signing_key", "master_key",
)  # fmt: skip
_CREDENTIAL_KEYS = ("key", "auth", "authorization", "license_key", "openai_key", "session_id")


def _secret_named(m: _Maker) -> Iterator[Case]:
    for template in _ASSIGNMENTS:
        value = m.mixed(ALNUM, 18)
        yield Case("secret", "assignment", {"cmd": template.format(value)}, (value,))
    words = ("hunter2", "correct horse battery staple", "letmein", "Tr0ub4dor&3", "12345678")
    for n, key in enumerate(_SECRET_KEYS):
        value = words[n % len(words)] if n % 2 else m.mixed(ALNUM, 20)
        yield Case("secret", "secret_named", {key: value}, (value,), expected={key: "[secret]"})
    for key in _CREDENTIAL_KEYS:
        value = m.mixed(ALNUM, 32)
        yield Case("secret", "credential_named", {key: value}, (value,))
    basic = base64.b64encode(b"deploy:" + m.chars(ALNUM, 12).encode()).decode()
    yield Case("secret", "credential_named", {"authorization": f"Basic {basic}"}, (basic,))
    nested = m.mixed(ALNUM, 16)
    yield Case(
        "secret",
        "secret_named_nested",
        {"config": {"db": {"host": "db", "port": 5432, "password": nested}}},
        (nested,),
        expected={"config": {"db": {"host": "db", "port": 5432, "password": "[secret]"}}},
    )
    listed = m.mixed(ALNUM, 16)
    yield Case("secret", "secret_named_nested", {"api_keys": ["x" + listed, "y" + listed]},
               (listed,))  # fmt: skip
    inner = m.mixed(ALNUM, 16)
    yield Case("secret", "secret_named_nested", {"credentials": {"user": "svc", "value": inner}},
               (inner,))  # fmt: skip


_NAMES = ("zoe.quill", "marta+ci", "j.o.hansen", "dev-ops", "ana_lu", "Kofi.Mensah")
_DOMAINS = ("example.com", "mail.example.co.uk", "corp.example.io", "EXAMPLE.ORG")


def _personal(m: _Maker) -> Iterator[Case]:
    for n, (local, domain) in enumerate((a, b) for a in _NAMES for b in _DOMAINS[:3]):
        address = f"{local}{n}@{domain}"
        text = ("{}", "sent to {} today", "Name <{}>", "mailto:{}", "owner={}")[n % 5]
        yield Case("secret", "email", {"v": text.format(address)}, (f"{local}{n}",))
    yield Case("secret", "email", {"url": "https://x.test/u?email=tove.lind%40example.com"},
               ("tove.lind",))  # fmt: skip
    yield Case("secret", "email", {"v": "CONTACT: SVEN.DAHL@EXAMPLE.ORG"}, ("SVEN.DAHL",))
    yield Case("secret", "email", {"sql": "WHERE email = 'ruth.k@example.net'"}, ("ruth.k",))
    yield Case("secret", "home_path", {"trace": 'File "/home/zed9/app.py", line 3'}, ("zed9",))
    addresses = ("10.1.2.3", "192.168.1.20", "172.16.254.1", "8.8.4.4", "203.0.113.77",
                 "100.64.12.9")  # fmt: skip
    for n, ip in enumerate(addresses):
        text = ("{}", "connected to {}:8080", "peer={}", "http://{}/health", "from {}.",
                "ssh deploy@{}")[n]  # fmt: skip
        yield Case("secret", "ipv4", {"v": text.format(ip)}, (ip,))
    for ip in (
        "2001:db8:85a3::8a2e:370:7334",
        "2001:0db8:0000:0000:0000:ff00:0042:8329",
        "fe80::1ff:fe23:4567:890a",
        "2606:4700:4700::1111",
        "fd12:3456:789a::1",
    ):
        yield Case("secret", "ipv6", {"v": f"listening on [{ip}]:443"}, (ip,))
    yield Case("secret", "ipv6", {"v": "via fe80::1ff:fe23:4567:890a%eth0"}, ("fe23:4567",))
    for user, path in (
        ("zoeq", "/home/zoeq/src/app.py"),
        ("mdahl", "/Users/mdahl/Library/x"),
        ("kofim", "C:\\Users\\kofim\\code\\a.ts"),
        ("tlind", "file:///home/tlind/a"),
        ("ana9", "/mnt/c/Users/ana9/x"),
        ("erin2", "/var/home/erin2/.config"),
        ("sven3", "cd /home/sven3 && ls"),
        ("jo4", "'/Users/jo4/Desktop'"),
    ):
        yield Case("secret", "home_path", {"cwd": path}, (user,))


def _names(m: _Maker) -> Iterator[Case]:
    """Secrets and addresses where a name goes: property keys at any depth, the source."""
    token = "ghp_" + m.mixed(ALNUM, 36)
    openai = "sk-proj-" + m.mixed(URLSAFE, 48)
    yield Case("secret", "key_email", {"lena.berg@example.com": 1}, ("lena.berg",))
    yield Case("secret", "key_secret", {token: 2}, (token,))
    yield Case("secret", "key_secret_nested", {"by_key": {openai: {"calls": 3}}}, (openai,))
    yield Case("secret", "key_email_nested", {"users": [{"omar.h@example.com": True}]},
               ("omar.h",))  # fmt: skip
    yield Case("secret", "key_ip", {"hosts": {"10.9.8.7": "up"}}, ("10.9.8.7",))
    yield Case("secret", "key_home", {"/home/ivo5/notes.md": "opened"}, ("ivo5",))
    yield Case(
        "secret", "key_collision", {"a.b@example.com": 1, "c.d@example.com": 2},
        ("a.b@", "c.d@"), expected={"[email]": 1, "[email]#2": 2},
    )  # fmt: skip
    github, anthropic = "ghp_" + m.mixed(ALNUM, 36), "sk-ant-api03-" + m.mixed(URLSAFE, 40)
    for agent, canary in (("lena.berg@example.com", "lena.berg"), (github, github),
                          (anthropic, anthropic), ("bot-on-10.0.0.12", "10.0.0.12")):  # fmt: skip
        yield Case("secret", "agent", {}, (canary,), agent=agent)


def _keep(kind: str, properties: dict[str, Any], *, known_loss: bool = False) -> Case:
    return Case("keep", kind, properties, known_loss=known_loss)


def lookalike_cases(m: _Maker) -> Iterator[Case]:
    yield from _lookalike_names(m)
    yield from _lookalike_values(m)
    yield from _lookalike_everyday()
    yield from _lookalike_40_characters(m)


def _lookalike_names(m: _Maker) -> Iterator[Case]:
    """Secret words in names whose values are not secrets, and secrets' non-string values."""
    for key, value in (
        ("passwordless", True), ("passwordless", "enabled"), ("token_count", 5),
        ("max_tokens", 4096), ("input_tokens", 1200), ("output_tokens", 87),
        ("total_tokens", 1287), ("tokens", 12), ("maxTokens", 512), ("cached_tokens", 0),
        ("token_type", "bearer"), ("tokenizer", "cl100k_base"), ("auth", "basic"),
        ("auth", "oauth2"), ("auth", "none"), ("authorization", "Bearer"),
        ("key", "value"), ("key", "Enter"), ("key", "user_id"), ("keyboard", "us-intl"),
        ("key_id", "a1b2c3d4e5f6a7b8"), ("cache_key", "user:123:profile"),
        ("public_key", "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9o"),
        ("password_policy", "strong"), ("password_min_length", 12), ("secret_name", "db-creds"),
        ("secret_arn", "arn:aws:secretsmanager:eu-west-1:123456789012:secret:db"),
        ("auth_method", "saml"), ("auth_provider", "github"), ("api_key_env", "OPENAI_API_KEY"),
        ("token_url", "https://oauth2.example.test/token"), ("signature_algorithm", "RS256"),
        ("password", None), ("password", ""), ("api_key", None), ("secret", 0),
        ("has_api_key", True), ("api_key_set", False), ("token_expires_in", 3600),
        ("session_id", "123e4567-e89b-12d3-a456-426614174000"), ("session", "abc"),
        ("author", "mdahl"), ("passes", 3), ("pass", 2), ("cwd", "~/src"),
        ("access_token", 1), ("is_authenticated", True), ("credentials_valid", True),
        ("retry_after_auth", 2), ("cookie_consent", False),
    ):  # fmt: skip
        yield _keep(f"name:{key}", {key: value})
    yield _keep("name:nested", {"usage": {"input_tokens": 10, "output_tokens": 2,
                                          "cache_read_input_tokens": 0}})  # fmt: skip
    # GenAI token names: `gen_ai.token.type` says which tokens a metric point counts.
    for key, value in (
        ("gen_ai.token.type", "input"), ("gen_ai.token.type", "output"),
        ("gen_ai.usage.input_tokens", 1520), ("gen_ai.usage.output_tokens", 312),
        ("gen_ai.usage.cache_read.input_tokens", 9000), ("max_tokens", 1024),
        ("token_count", 3), ("gen_ai.request.max_tokens", 4096),
    ):  # fmt: skip
        yield _keep(f"name:{key}", {key: value})
    yield _keep("name:otel_metric", {"gen_ai.token.type": "input", "gen_ai.request.model": "m",
                                     "metric.type": "histogram", "metric.sum": 1520})  # fmt: skip
    yield _keep("name:otel", {"gen_ai.usage.input_tokens": 4, "gen_ai.request.max_tokens": 9,
                              "http.request.method": "POST", "session.id": "run-7"})  # fmt: skip
    yield _keep("name:version", {"version": "1.2.3.4", "sdk_version": "v10.0.0.1",
                                 "python_version": "3.11.7", "build": "10.0.19041.1"})  # fmt: skip
    for agent in ("claude-code", "planner", "posthog-python", "my-agent/1.2.3", "agent@1.2.3"):
        yield Case("keep", "name:agent", {}, agent=agent)


def _lookalike_values(m: _Maker) -> Iterator[Case]:
    uuid4 = "9b2f6c1e-3d4a-4f5b-8c7d-6e5f4a3b2c1d"
    sha = m.chars(HEX, 40)
    for value in (
        uuid4, "0193a5c1-7e2b-7c3d-9f4e-5a6b7c8d9e0f", m.chars(HEX, 32), m.chars(HEX, 16),
        "req_01HX3Z5K8M2N4P6Q8R0S2T4V6W", sha, m.chars(HEX, 64), "sha256:" + m.chars(HEX, 64),
        f"https://github.com/org/repo/commit/{sha}",
        f"https://github.com/org/repo/blob/{sha}/src/app.py#L12",
        f"https://gitlab.example.test/g/p/-/tree/{sha[:12]}", "d41d8cd98f00b204e9800998ecf8427e",
        "sha512-" + base64.b64encode(m.rng.randbytes(64)).decode(),
        "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=",
        "2026-11-24T21:00:00.123Z", "2026-11-24 21:00:00+01:00", "2026-11-24T21:00:00Z",
        "21:00:00", "1:02:03.5", "20261124T210000Z", "Tue, 24 Nov 2026 21:00:00 GMT",
        "1.2.3", "v1.2.3.4", "version 1.2.3.4", "1.2.3.4.5", "10.0.19041.1", "4.8.4161.0",
        "1.2.3-beta.1", "3.14159", "1,234,567", "0.0.0.0/0 is not allowed" if False else "99.5%",
        "claude-3-5-sonnet-20241022", "gpt-4o-2024-08-06", "scikit-learn", "sk-learn",
        "skip-this-step", "sk-short", "ghp_short", "AKIA is an AWS prefix", "xoxb-", "Bearer",
        "bearer token missing", "the password is wrong", "reset your password",
        "token limit exceeded", "invalid api key", "secret sauce", "auth: basic",
        "key: value", "password: required", "token=", "@mention", "@scope/pkg@1.2.3",
        "logo@2x.png", "icon@3x.webp", "git@github.com:org/repo.git", "user@localhost",
        "/homework/ch1.md", "/usr/local/bin/python3", "~/projects/x", "/opt/homebrew/bin",
        "https://example.com/home/about", "https://docs.example.test/Users/guide",
        "http://localhost:8080/path?q=1&page=2", "https://example.com/search?q=keys&lang=en",
        "std::vector<int>", "tokio::spawn", "Foo::Bar::baz", "arn:aws:iam::123456789012:role/x",
        "12:34:56:78", "model-1", "tool.call", "ERR_CONNECTION_REFUSED",
        "passwordless: true", "max_tokens=4096 tokens_in=10", "Basic",
        "pk_live_" + m.mixed(ALNUM, 24),
    ):  # fmt: skip
        yield _keep("value", {"v": value})


# What agents really report: commands, errors, addresses of this machine, configuration
# that names a secret without holding it.
_EVERYDAY = (
    "npm install --save-dev typescript", "git push --force-with-lease origin main",
    "pytest -k 'token and not slow'", "Error: connect ECONNREFUSED 127.0.0.1:5432",
    "listening on 0.0.0.0:8080", "http://127.0.0.1:7468/v1/events", "ping ::1",
    "https://api.openai.com/v1/chat/completions", "s3://bucket/key/path.json",
    "docker run -e TOKEN -p 8080:80 image:tag", "Authorization header missing",
    "set OPENAI_API_KEY in your environment", "api_key=${OPENAI_API_KEY}",
    "token: ${{ secrets.GITHUB_TOKEN }}", "password=$DB_PASSWORD", "secret=%APP_SECRET%",
    'WWW-Authenticate: Bearer realm="example"', "keyring backend: SecretService",
    "ssh -i ~/.ssh/id_ed25519 git@github.com", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
    "client_id=abc123", "/api/v1/users/12345/sessions", "こんにちは世界 🚀",
    "SELECT * FROM users WHERE email = ?", "PUT /v1/keys/abc", "docker login --password-stdin",
    "node --max-old-space-size=4096 server.js", "--secret-file /run/secrets/db",
    "echo $TOKEN | gh auth login --with-token", "gh auth token", "token_budget=2000",
    "password reset email sent", "rotate the signing key monthly", "a::b",
)  # fmt: skip


def _lookalike_everyday() -> Iterator[Case]:
    for value in _EVERYDAY:
        # `a::b` is a valid IPv6 address (the same as a:0:0:0:0:0:0:b) as well as C++.
        yield _keep("everyday", {"v": value}, known_loss=value == "a::b")


def _lookalike_40_characters(m: _Maker) -> Iterator[Case]:
    """Forty characters of base64's alphabet that are not AWS secret keys."""
    for _ in range(8):
        yield _keep("40:git_sha", {"commit": m.chars(HEX, 40)})
    yield _keep("40:git_sha_upper", {"commit": m.chars("0123456789ABCDEF", 40)})
    for ident in (
        "handleUserAuthenticationCallbackForOAuth2",
        "getUserProfileSettingsForAccountId2Async",
        "AbstractSingletonProxyFactoryBean2Config",
        "test_user_can_login_with_valid_password1",
        "src/components/dashboard/ChartPanelView2",
        "app/models/UserAccountSettings/Profile22",
    ):
        yield _keep("40:identifier", {"v": ident[:40]})
    for text in (
        b"the quick brown fox jumps over the lazy!",
        b"agent-telemetry run 2026-11-24 ok!!!!!!",
    ):
        yield _keep("40:base64_text", {"v": base64.b64encode(text[:30]).decode()}, known_loss=True)
    # Random opaque identifiers of exactly this length: nothing tells them from a key.
    for _ in range(2):
        yield _keep("40:opaque_id", {"v": m.mixed(ALNUM, 40)}, known_loss=True)


def corpus(seed: int = 20261124) -> list[Case]:
    m = _Maker(seed)
    return [*secret_cases(m), *bare_aws_secret_cases(m), *lookalike_cases(m)]
