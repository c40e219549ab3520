"""Runs the Node shim's own tests (`node --test`), so `make test` covers both shims."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.daemon_process import DaemonProcess
from tests.tools import required_tool

NODE_SHIM = Path(__file__).resolve().parent.parent / "client_shim" / "node"
# Where the Node tests make their temporary homes (short: a socket path must fit in 107 bytes).
NODE_TEMP_PREFIX = "atn-"


def test_node_shim_suite_passes() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENT_TELEMETRY_")}
    before = set(Path("/tmp").glob(f"{NODE_TEMP_PREFIX}*"))
    proc = subprocess.run(
        [required_tool("nodejs", "node"), "--test", str(NODE_SHIM)],
        env=env,
        capture_output=True,
        text=True,
        timeout=110,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "# fail 0" in proc.stdout
    # Each test process's shim spools its drop counts as it exits, after the test hooks:
    # its home must still go, not pile up under /tmp run after run.
    left = set(Path("/tmp").glob(f"{NODE_TEMP_PREFIX}*")) - before
    assert not left, f"the Node tests left {sorted(map(str, left))}"


# Values a user may put in the environment: words, numbers, padding of every kind that
# Python's str.strip() removes (or, like U+FEFF, does not).
FLAG_VALUES = [
    *("", "0", "1", "false", "FALSE", "no", "off", "Off", "yes", "local", "upload", "UPLOAD"),
    *(" 0 ", "\t1\n", "0\x1f", "\x1coff", "off\x85", "\ufeff0", "\u3000no", "no\xa0", "o ff"),
    *("local\x1e", "\x1dupload", "\ufeffoff", " off\u2029"),
]


def test_node_reads_the_disabled_flag_and_the_mode_as_the_python_shim() -> None:
    """Whether a value silences the agent, or turns the mode off, is the same in both shims."""
    from agent_telemetry._consent import mode_is_off
    from agent_telemetry._settings import flag_set

    script = (
        "const { flag, modeIsOff } = require(process.argv[1]);\n"
        "const values = JSON.parse(require('node:fs').readFileSync(0, 'utf8'));\n"
        "console.log(JSON.stringify(values.map((v) => [flag(v),"
        " modeIsOff({ AGENT_TELEMETRY_MODE: v, AGENT_TELEMETRY_HOME: '/nonexistent' })])));\n"
    )
    proc = subprocess.run(
        [required_tool("nodejs", "node"), "-e", script, str(NODE_SHIM / "consent.js")],
        input=json.dumps(FLAG_VALUES),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 0, proc.stderr
    python = [
        [
            flag_set(v),
            mode_is_off({"AGENT_TELEMETRY_MODE": v, "AGENT_TELEMETRY_HOME": "/nonexistent"}),
        ]
        for v in FLAG_VALUES
    ]
    node = json.loads(proc.stdout)
    differing = [(v, p, n) for v, p, n in zip(FLAG_VALUES, python, node, strict=True) if p != n]
    assert not differing


# Consent records as (owner, mode bits, text): the user's own, another user's, and the
# user's own that others may change.
OTHER_UID = 65534
RECORDS = [
    ("own", 0o600, '{"mode": "upload"}'),
    ("own", 0o600, "{garbage"),
    ("other", 0o644, '{"mode": "upload"}'),
    ("other", 0o644, '{"mode": "local"}'),
    ("other", 0o644, "{garbage"),
    ("other", 0o600, '{"mode": "upload"}'),
    ("other", 0o644, '{"mode": "off"}'),
    ("own", 0o666, '{"mode": "upload"}'),
    ("own", 0o620, '{"mode": "off"}'),
]


def test_both_shims_take_a_record_someone_else_may_have_written_as_the_daemon_does(
    tmp_path: Path,
) -> None:
    """Another user's consent.json (beside a config in a shared folder) says nothing
    unless it says off: the daemon does not use it, and neither shim lets it decide
    whether an agent spools, whatever it holds or whether it can be read."""
    from agent_telemetry._consent import stored_mode
    from agent_telemetryd.consent import StoredConsent, UnreadableConsent, read_stored

    paths = []
    for number, (owner, mode, text) in enumerate(RECORDS):
        path = tmp_path / f"consent-{number}.json"
        path.write_text(text)
        path.chmod(mode)
        if owner == "other":
            os.chown(path, OTHER_UID, OTHER_UID)
        paths.append(path)

    def daemon_reading(path: Path) -> str | None:
        record = read_stored(path)
        if isinstance(record, StoredConsent):
            return record.mode
        return "off" if isinstance(record, UnreadableConsent) else None

    script = (
        "const { storedMode } = require(process.argv[1]);\n"
        "const files = JSON.parse(require('node:fs').readFileSync(0, 'utf8'));\n"
        "console.log(JSON.stringify(files.map(storedMode)));\n"
    )
    proc = subprocess.run(
        [required_tool("nodejs", "node"), "-e", script, str(NODE_SHIM / "consent.js")],
        input=json.dumps([str(path) for path in paths]),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 0, proc.stderr
    expected = ["upload", "off", None, None, None, None, "off", None, "off"]
    assert [daemon_reading(path) for path in paths] == expected
    assert [stored_mode(path) for path in paths] == expected
    assert json.loads(proc.stdout) == expected


def test_node_finds_every_file_where_the_python_shim_does(tmp_path: Path) -> None:
    """The same environment gives both shims the same paths, character for character.

    `..` is kept as the Python shim keeps it: after a symlink, `link/..` is the parent of
    the link's target, not the folder that holds the link.
    """
    from agent_telemetry import _paths

    real = tmp_path / "real" / "inner"
    real.mkdir(parents=True)
    (tmp_path / "link").symlink_to(real)
    via_link = f"{tmp_path}/link/../h"
    taken = tmp_path / "taken"
    taken.mkdir(mode=0o755)
    taken.chmod(0o755)
    environments: list[dict[str, str]] = [
        {"AGENT_TELEMETRY_HOME": via_link},
        {"AGENT_TELEMETRY_HOME": f"{tmp_path}//h/./x/"},
        {"AGENT_TELEMETRY_HOME": "relative/h"},
        {
            "AGENT_TELEMETRY_HOME": str(tmp_path / "h"),
            "AGENT_TELEMETRY_CONFIG": via_link + "/c.toml",
        },
        {"HOME": str(tmp_path), "XDG_RUNTIME_DIR": f"{tmp_path}/link/../run"},
        {"HOME": str(tmp_path), "XDG_DATA_HOME": via_link, "XDG_CONFIG_HOME": via_link + "/"},
        {"HOME": f"{tmp_path}/link/../", "XDG_RUNTIME_DIR": str(taken)},
        {"HOME": "relative", "XDG_RUNTIME_DIR": str(tmp_path / "taken" / "..")},
    ]
    functions = {
        "dataDir": _paths.data_dir,
        "spoolDir": _paths.spool_dir,
        "configFile": _paths.config_file,
        "consentFile": _paths.consent_file,
        "preferredRuntimeDir": _paths.preferred_runtime_dir,
        "runtimeDir": _paths.runtime_dir,
        "ingestSocketPath": _paths.ingest_socket_path,
    }
    script = (
        "const paths = require(process.argv[1]);\n"
        "const [names, envs] = JSON.parse(require('node:fs').readFileSync(0, 'utf8'));\n"
        "console.log(JSON.stringify(envs.map((env) =>"
        " names.map((name) => paths[name](env, 'linux')))));\n"
    )
    proc = subprocess.run(
        [required_tool("nodejs", "node"), "-e", script, str(NODE_SHIM / "paths.js")],
        input=json.dumps([list(functions), environments]),
        capture_output=True,
        text=True,
        timeout=30,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    cwd = os.getcwd()
    os.chdir(tmp_path)  # where a relative home is taken from, as for the Node process
    try:
        python = [[str(fn(env, "linux")) for fn in functions.values()] for env in environments]
    finally:
        os.chdir(cwd)
    node = json.loads(proc.stdout)
    differing = [
        (env, name, p, n)
        for env, ps, ns in zip(environments, python, node, strict=True)
        for name, p, n in zip(functions, ps, ns, strict=True)
        if p != n
    ]
    assert not differing


SPOOLING_AGENTS = {
    "node": (
        "const { track, span } = require(process.argv[1]);\n"
        "track('agent.step', { model: 'gpt-4o', note: 'mail a@b.example' }, {\n"
        "  uuid: '01935c1e-7b2a-7c3d-8e4f-0123456789ab',\n"
        "  timestamp: '2026-11-24T21:00:00.123Z',\n"
        "});\n"
        "track('agent.bad', { n: NaN });\n"
        "try { span('tool.call', { tool: 'search' }, () => { throw new TypeError('a secret'); }); }"
        " catch {}\n"
    ),
    "python": (
        "from agent_telemetry import span, track\n"
        "track('agent.step', {'model': 'gpt-4o', 'note': 'mail a@b.example'},"
        " uuid='01935c1e-7b2a-7c3d-8e4f-0123456789ac', timestamp='2026-11-24T21:00:00.123Z')\n"
        "track('agent.bad', {'n': float('nan')})\n"
        "try:\n"
        "    with span('tool.call', {'tool': 'search'}):\n"
        "        raise TypeError('a secret')\n"
        "except TypeError:\n"
        "    pass\n"
    ),
}


def test_what_the_node_shim_spools_the_daemon_takes_as_it_takes_the_python_shims(
    daemon_factory: Callable[..., DaemonProcess],
) -> None:
    """Both agents run while the daemon is down; it starts, reads both spool files, and
    stores the same events with the same fields, and counts both agents' losses."""
    daemon = daemon_factory({"AGENT_TELEMETRY_RATE_LIMIT": "off"}, start=False)
    node = required_tool("nodejs", "node")
    commands = {
        "node": [node, "-e", SPOOLING_AGENTS["node"], str(NODE_SHIM / "index.js")],
        "python": [sys.executable, "-c", SPOOLING_AGENTS["python"]],
    }
    for command in commands.values():
        subprocess.run(command, env=daemon.env, check=True, timeout=30)
    assert len(list((daemon.home / "data" / "spool").glob("*.ndjson"))) == 2
    daemon.start()
    deadline = time.monotonic() + 20
    events: list[dict[str, Any]] = []
    while len(events) < 4 and time.monotonic() < deadline:
        events = daemon.export()
        time.sleep(0.1)
    by_agent: dict[str, dict[str, dict[str, Any]]] = {"node": {}, "python": {}}
    for event in events:
        by_agent[event["agent"]][event["event"]] = event
    varying = {"agent", "pid", "uuid", "received_at", "timestamp", "trace_id", "span_id"}
    for name in ("agent.step", "tool.call"):
        node_event, python_event = by_agent["node"][name], by_agent["python"][name]
        assert node_event["transport"] == "spool"
        node_event["properties"].pop("duration_ms", None)
        python_event["properties"].pop("duration_ms", None)
        assert {k: v for k, v in node_event.items() if k not in varying} == {
            k: v for k, v in python_event.items() if k not in varying
        }
    assert by_agent["node"]["agent.step"]["timestamp"] == "2026-11-24T21:00:00.123Z"
    assert by_agent["node"]["tool.call"]["properties"]["error_type"] == "TypeError"
    assert daemon.status()["counters"]["dropped_by_reason"]["client_invalid"] == 2
    assert not list((daemon.home / "data" / "spool").iterdir())
