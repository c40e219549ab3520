"""The machine's own name, often its owner's (`janes-macbook-pro`), is stored as `[host]`:
in an OpenTelemetry resource's `host.name`, in a shim event's `hostname`, in any text, in
any case; another machine's name that only begins like it is kept. The daemon runs in a
machine of that name (its own UTS namespace, which needs root, as the tests have)."""

from __future__ import annotations

import ctypes
import socket

from agent_telemetry._wire import encode_event
from tests.conftest import DaemonFactory
from tests.otlp_messages import span, traces
from tests.test_daemon_ingest import send_lines, wait_for_rows
from tests.test_otlp_receiver import PROTOBUF, buffer_bytes, post

HOST = "janes-macbook-pro"
CLONE_NEWUTS = 0x04000000
NOW = 1_800_000_000_000


def in_a_machine_named_janes() -> None:
    """Runs in the daemon's process before it starts: a machine name of its own."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWUTS) != 0:
        raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWUTS)")
    socket.sethostname(HOST)


def test_the_machines_name_is_stored_as_host_from_otlp_and_the_shim(
    daemon_factory: DaemonFactory,
) -> None:
    daemon = daemon_factory({"AGENT_TELEMETRY_RATE_LIMIT": "off"}, start=False)
    daemon.preexec_fn = in_a_machine_named_janes
    daemon.start()
    resource = {"service.name": "planner", "host.name": HOST, "host.arch": "arm64"}
    body = traces(span("plan"), resource=resource).SerializeToString()
    assert post(f"{daemon.http_url()}/v1/traces", body, PROTOBUF)[0] == 200
    properties = {
        "hostname": HOST,
        "host": f"{HOST.title()}.local",
        "prompt": f"jane@{HOST}:~$ make",
        "note": f"built on {HOST.upper()} today",
        "peer": f"{HOST}-2",  # another machine
    }
    # Twice in one second: the second line is of a shape the daemon has seen.
    for n in range(2):
        send_lines(daemon.ingest_socket, encode_event("build.done", properties, now_ms=NOW))
        wait_for_rows(daemon, 3 + n)  # the span, the resource, the lines so far

    rows = daemon.export()
    resources = [row["properties"] for row in rows if row["event"] == "otel.resource"]
    assert resources == [{"service.name": "planner", "host.name": "[host]", "host.arch": "arm64"}]
    builds = [row["properties"] for row in rows if row["event"] == "build.done"]
    assert (
        builds
        == [
            {
                "hostname": "[host]",
                "host": "[host].local",
                "prompt": "jane@[host]:~$ make",
                "note": "built on [host] today",
                "peer": f"{HOST}-2",
            }
        ]
        * 2
    )
    raw = buffer_bytes(daemon).lower().replace(f"{HOST}-2".encode(), b"")
    assert HOST.encode() not in raw
