"""The real `posthog` SDK, unchanged, pointed at the daemon with feature flags on: it logs
no error, leaves no flag noise in the buffer, and its events count under their agent."""

from __future__ import annotations

import gzip
import json
import logging
import urllib.request
from collections.abc import Iterator

import posthog
import pytest

from agent_telemetryd.receivers.posthog_capture import to_wire_event
from tests.conftest import DaemonFactory
from tests.daemon_process import DaemonProcess
from tests.test_daemon_ingest import wait_for_rows


class Recorder(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def sdk_log() -> Iterator[Recorder]:
    logger = logging.getLogger("posthog")
    recorder = Recorder()
    logger.addHandler(recorder)
    level = logger.level
    logger.setLevel(logging.DEBUG)
    yield recorder
    logger.removeHandler(recorder)
    logger.setLevel(level)


@pytest.fixture
def daemon(daemon_factory: DaemonFactory) -> DaemonProcess:
    return daemon_factory({"AGENT_TELEMETRY_RATE_LIMIT": "off"})


# feature_enabled and get_feature_flag are deprecated in this SDK but still what most code
# calls; their DeprecationWarning is the SDK's advice to its users, not a daemon problem.
@pytest.mark.filterwarnings("ignore:`(feature_enabled|get_feature_flag)` is deprecated")
def test_the_sdk_with_feature_flags_stays_quiet_and_records_nothing_extra(
    daemon: DaemonProcess, sdk_log: Recorder
) -> None:
    client = posthog.Posthog(
        "phc_local_test_key",
        host=daemon.http_url(),
        secret_key="phx_local_personal_key",  # local evaluation: polls flag definitions
        feature_flags_request_timeout_seconds=5,
        sync_mode=True,
        max_retries=0,
    )
    try:
        client.load_feature_flags()
        assert client.feature_flags == []  # the definitions were read: none
        assert client.feature_enabled("new-planner", "alice@example.com") is None
        assert client.get_feature_flag("model-choice", "alice@example.com") is None
        assert client.get_all_flags("alice@example.com") == {}
        assert not client.evaluate_flags("alice@example.com").is_enabled("new-planner")
        for i in range(3):
            client.capture(
                "agent.step",
                distinct_id="alice@example.com",
                properties={"agent": "planner", "i": i},
            )
        client.capture("sdk.plain", distinct_id="alice@example.com", properties={"i": 9})
        # A flag the SDK really evaluated (here: a value it reports) is an event like any.
        client.capture(
            "$feature_flag_called",
            distinct_id="alice@example.com",
            properties={"$feature_flag": "from-elsewhere", "$feature_flag_response": True},
        )
        client.flush()
    finally:
        client.shutdown()

    problems = [r for r in sdk_log.records if r.levelno >= logging.WARNING]
    assert problems == [], [r.getMessage() for r in problems]
    rows = wait_for_rows(daemon, 5) and daemon.export()
    assert sorted(r["event"] for r in rows) == [
        "$feature_flag_called",
        "agent.step",
        "agent.step",
        "agent.step",
        "sdk.plain",
    ]
    (evaluated,) = [r for r in rows if r["event"] == "$feature_flag_called"]
    assert evaluated["properties"]["$feature_flag"] == "from-elsewhere"
    sources = {r["event"]: r["agent"] for r in rows}
    assert sources["agent.step"] == "planner"  # its own bucket, not the SDK's
    assert sources["sdk.plain"] == "posthog-python"
    status = daemon.status()
    # The two flag reads' echoes were counted, not stored: received = stored + dropped.
    assert status["counters"]["dropped_by_reason"]["flag_not_evaluated"] == 2
    assert status["counters"]["received"] == 5 + 2
    assert b"alice@example.com" not in daemon.database.read_bytes()


@pytest.mark.parametrize(
    "path",
    ["/flags/?v=2", "/flags?v=2&config=true", "/decide/?v=3", "/decide/?v=4", "/flags/?v=4"],
)
def test_every_flags_version_answers_no_flags(daemon: DaemonProcess, path: str) -> None:
    body = json.dumps({"api_key": "phc_x", "distinct_id": "bob@example.com"}).encode()
    request = urllib.request.Request(
        daemon.http_url() + path, data=body, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        answer = json.loads(response.read())
    assert answer["flags"] == {} and answer["featureFlags"] == {}
    assert answer["errorsWhileComputingFlags"] is False
    assert daemon.status()["counters"]["received"] == 0  # a flags request is no event


def test_the_header_names_the_source_when_the_event_does_not(daemon: DaemonProcess) -> None:
    batch = {
        "api_key": "phc_x",
        "batch": [
            {"event": "a", "distinct_id": "d", "properties": {"$lib": "posthog-node"}},
            {
                "event": "b",
                "distinct_id": "d",
                "properties": {"$lib": "posthog-node", "agent": "own"},
            },
        ],
    }
    request = urllib.request.Request(
        daemon.http_url() + "/batch/",
        data=gzip.compress(json.dumps(batch).encode()),
        headers={
            "Content-Type": "application/json",
            "Content-Encoding": "gzip",
            "X-Agent-Name": "from-header",
        },
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert json.loads(response.read()) == {"status": 1}
    rows = wait_for_rows(daemon, 2) and daemon.export()
    assert {r["event"]: r["agent"] for r in rows} == {"a": "from-header", "b": "own"}


def test_the_source_precedence_property_header_lib() -> None:
    item = {"event": "e", "properties": {"$lib": "posthog-python", "agent": "planner\n"}}
    assert to_wire_event(item)["agent"] == "planner"  # made valid, not refused
    assert "agent" not in to_wire_event({"event": "e", "properties": {"$lib": "x"}},
                                        header_names_source=True)  # fmt: skip
    assert to_wire_event({"event": "e", "properties": {"$lib": "x", "agent": 3}})["agent"] == "x"
