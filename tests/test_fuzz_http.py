"""A fuzz run against the real daemon: arbitrary bodies never get a 5xx, never stop it,
and every event it was handed is still accounted for."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

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
