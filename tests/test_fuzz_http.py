"""Fuzz runs against the real daemon: arbitrary bodies never get a 5xx, never stop it,
and every event it was handed is still accounted for.

Two runs: hypothesis explores shapes (and shrinks a failure to its core); a bounded bulk
run sends 50,000 hostile inputs from four clients, with valid canary events among them
that must all be stored, and a secret in the hostile ones that must never be logged."""

from __future__ import annotations

import collections
import http.client
import json
import random
import socket
import urllib.error
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.daemon_process import DaemonProcess

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=25,
)
event_like = st.fixed_dictionaries(
    {"event": st.one_of(st.text(max_size=210), json_values)},
    optional={
        "properties": json_values,
        "timestamp": st.one_of(st.text(max_size=40), json_values),
        "uuid": st.one_of(st.uuids().map(str), st.text(max_size=40)),
        "agent": st.one_of(st.text(max_size=120), json_values),
        "extra": json_values,
    },
)
bodies = st.one_of(
    event_like.map(json.dumps).map(str.encode),
    st.lists(event_like, max_size=8).map(lambda e: json.dumps({"events": e}).encode()),
    st.lists(event_like, max_size=8).map(lambda e: json.dumps({"batch": e}).encode()),
    json_values.map(json.dumps).map(str.encode),
    st.binary(max_size=300),
)


def post(url: str, body: bytes) -> int:
    request = urllib.request.Request(url, data=body, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def test_arbitrary_bodies_never_break_the_daemon(daemon: DaemonProcess) -> None:
    base = daemon.http_url()

    @settings(
        max_examples=150,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(body=bodies, path=st.sampled_from(["/v1/events", "/batch/", "/i/v0/e/", "/capture/"]))
    def one(body: bytes, path: str) -> None:
        status = post(base + path, body)
        assert status < 500, (path, body[:200], status)

    one()
    status = daemon.status()
    assert status["running"] is True
    counters = status["counters"]
    assert counters["received"] == (counters["stored"] + counters["rejected"] + counters["dropped"])
    assert counters["stored"] == status["buffer"]["events"]
    assert "Traceback" not in daemon.log()


# --- a bounded bulk run: many hostile inputs, canaries among them ---------------------------

FUZZ_INPUTS = 20_000
CANARY_EVERY = 20  # one valid canary event among this many inputs
RAW_EVERY = 250  # one malformed HTTP request (bad framing) among this many inputs
WORKERS = 4
# Carried by hostile inputs in values, keys, headers and framing: never to reach a log line.
SECRET = "sk-ant-api03-FUZZSECRETfuzzsecret0123456789abcdefABCDEF"
ROUTES = ("/v1/events", "/batch/", "/capture/", "/e/", "/i/v0/e/")


def random_value(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.randrange(9 if depth < 4 else 6)
    if kind == 0:
        return None
    if kind == 1:
        return rng.random() < 0.5
    if kind == 2:
        return rng.randint(-(2**70), 2**70)
    if kind == 3:
        return rng.choice([rng.random() * 1e308, -0.0, 1e-320])
    if kind == 4:
        return "".join(chr(rng.randrange(0x20, 0x3000)) for _ in range(rng.randrange(12)))
    if kind == 5:
        return rng.choice([SECRET, f"user-{rng.randrange(99)}@example.com", "\x00\x1f", ""])
    if kind in (6, 7):
        return [random_value(rng, depth + 1) for _ in range(rng.randrange(4))]
    return {
        rng.choice(["a", SECRET, "properties", "$lib", str(depth)]): random_value(rng, depth + 1)
        for _ in range(rng.randrange(4))
    }


def hostile_request(rng: random.Random) -> tuple[str, bytes, dict[str, str]]:
    """(path, body, headers) of one input that is mostly not a valid event."""
    path = rng.choice(ROUTES)
    headers = {"Content-Type": "application/json"}
    if rng.random() < 0.1:
        headers["X-Agent-Name"] = rng.choice([SECRET, "agent\x7f", "a" * 300])
    kind = rng.randrange(10)
    if kind == 0:
        body = rng.randbytes(rng.randrange(300))
    elif kind == 1:
        body = json.dumps(random_value(rng)).encode()
    elif kind == 2:
        event = {"event": random_value(rng), "properties": random_value(rng)}
        for key in rng.sample(["timestamp", "uuid", "agent", SECRET], rng.randrange(3)):
            event[key] = random_value(rng)
        body = json.dumps(event).encode()
    elif kind == 3:
        many = [{"event": f"fuzz.{n}", "properties": random_value(rng)} for n in range(5)]
        wrapper = "batch" if path != "/v1/events" else "events"
        body = json.dumps({wrapper: [*many, random_value(rng)]}).encode()
    elif kind == 4:
        body = b'{"event": "deep", "properties": ' + b'{"a": ' * 60 + b"1" + b"}" * 61
    elif kind == 5:
        props = {f"k{n}": n for n in range(300)}
        body = json.dumps({"event": "wide", "properties": props}).encode()
    elif kind == 6:
        body = b'{"event": "bad.utf8", "properties": {"s": "\xff\xfe' + SECRET.encode() + b'"}}'
    elif kind == 7:
        headers["Content-Encoding"] = "gzip"
        body = rng.choice([b"\x1f\x8b\x08\x00" + rng.randbytes(40), SECRET.encode()])
    elif kind == 8:
        whole = json.dumps({"event": "cut", "properties": {"secret": SECRET}}).encode()
        body = whole[: rng.randrange(1, len(whole))]
    else:
        event = {"event": SECRET + "\n", "timestamp": "yesterday", "uuid": SECRET}
        body = json.dumps(event).encode()
    return path, body, headers


def malformed_http(rng: random.Random) -> bytes:
    """A request whose framing is broken, carrying the secret where aiohttp would quote it."""
    head = "POST /v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    return rng.choice(
        [
            f"{head}X-Agent-Name: a\x01{SECRET}\r\nContent-Length: 2\r\n\r\n{{}}",
            f"POST /v1/events?token={SECRET} HTTP/1.1 x\r\nHost: 127.0.0.1\r\n\r\n",
            f"{head}Transfer-Encoding: chunked\r\n\r\nzz{SECRET}\r\n{{}}\r\n0\r\n\r\n",
            f"{head}{SECRET}\r\n\r\n",
        ]
    ).encode("latin-1")


class FuzzWorker:
    """One client on a keep-alive connection, reconnecting when the daemon hangs up."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        self.statuses: collections.Counter[int] = collections.Counter()
        self.canaries: list[int] = []

    def post(self, path: str, body: bytes, headers: dict[str, str]) -> int:
        for attempt in range(3):
            try:
                self.conn.request("POST", path, body=body, headers=headers)
                response = self.conn.getresponse()
                response.read()
                if response.will_close:
                    self.conn.close()
                return response.status
            except (http.client.HTTPException, OSError):
                self.conn.close()  # the daemon closed a keep-alive connection: a new one
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def run(self, seed: int, count: int) -> None:
        rng = random.Random(seed)
        for i in range(count):
            if i % CANARY_EVERY == 0:
                n = seed * count + i
                canary = {"event": "fuzz.canary", "properties": {"n": n}, "uuid": str(uuid.uuid4())}
                path = rng.choice(["/v1/events", "/batch/"])
                body = {"events": [canary]} if path == "/v1/events" else {"batch": [canary]}
                status = self.post(path, json.dumps(body).encode(), {})
                assert status in (200, 202), (status, canary)
                self.canaries.append(n)
            elif i % RAW_EVERY == 1:
                with socket.create_connection(("127.0.0.1", self.port), timeout=60) as raw:
                    raw.sendall(malformed_http(rng))
                    answer = raw.recv(12)
                self.statuses[int(answer[9:12])] += 1
            else:
                self.statuses[self.post(*hostile_request(rng))] += 1
        self.conn.close()


@pytest.mark.timeout(300)
def test_a_bounded_fuzz_run_keeps_every_canary_and_every_count(daemon: DaemonProcess) -> None:
    port = int(daemon.http_url().rsplit(":", 1)[1])
    workers = [FuzzWorker(port) for _ in range(WORKERS)]
    per_worker = FUZZ_INPUTS // WORKERS
    with ThreadPoolExecutor(WORKERS) as pool:
        for done in [pool.submit(w.run, seed, per_worker) for seed, w in enumerate(workers)]:
            done.result()
    statuses = sum((w.statuses for w in workers), collections.Counter())
    assert not [code for code in statuses if code >= 500], statuses
    assert sum(statuses.values()) + sum(len(w.canaries) for w in workers) == FUZZ_INPUTS

    status = daemon.status()
    assert status["running"] is True
    counters = status["counters"]
    assert counters["received"] == counters["stored"] + counters["rejected"] + counters["dropped"]
    assert counters["stored"] == status["buffer"]["events"]
    stored = {r["properties"]["n"] for r in daemon.export() if r["event"] == "fuzz.canary"}
    sent = {n for w in workers for n in w.canaries}
    assert len(sent) == FUZZ_INPUTS // CANARY_EVERY and stored == sent

    log = daemon.log()
    assert SECRET not in log and "Traceback" not in log
    # Logged by reason and rate-limited: a few hundred lines, not one per input.
    assert len(log.splitlines()) < 1_000, len(log.splitlines())
