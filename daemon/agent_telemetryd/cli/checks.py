"""What `doctor` concludes from what it found: one check each, a verdict and the exact fix.

Pure: every function takes facts (gathered by `doctor.py`) and returns a `Check`, so each
verdict can be tested with plain values. `ok` needs nothing; `warn` works but is probably
not what the user wants; `fail` means something the user expects does not happen.
Here the daemon, its config, sockets, port, service, consent and sender; the data's checks
(disk, buffer, spool, clock) are in data_checks.py.
"""

from __future__ import annotations

import stat
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

OK, WARN, FAIL = "ok", "warn", "fail"
START_DAEMON = "agent-telemetry service install (or run it in a terminal: agent-telemetry daemon)"


@dataclass(frozen=True)
class Check:
    name: str
    verdict: str
    detail: str
    fix: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class PathFacts:
    """What `stat` says about a file or folder (`exists` False: the rest is meaningless)."""

    path: Path
    exists: bool
    mode: int = 0  # the full st_mode
    uid: int = -1

    @property
    def permissions(self) -> int:
        return stat.S_IMODE(self.mode)


def config_valid(
    path: Path,
    exists: bool,
    problems: list[str],
    daemon_running: bool,
    unused_file_fix: str | None = None,
    only_unknown: bool = False,
) -> Check:
    """`unused_file_fix`: the command that makes the file usable, when it is set aside
    (others can change it, or read the key in it). `only_unknown`: every problem is a key
    this version does not know (a newer version's), on which the daemon runs and holds
    uploads: a warning, since events are still kept."""
    if problems and only_unknown:
        then = "agent-telemetry reload" if daemon_running else "start the daemon"
        return Check(
            "config",
            WARN,
            f"{'; '.join(problems)} (the daemon runs and keeps events; nothing is uploaded "
            "while these are there)",
            f"upgrade agent-telemetry to the version that knows them, or remove them from "
            f"{path}, then: {then}",
        )
    if problems:
        listed = "; ".join(problems)
        then = "agent-telemetry reload" if daemon_running else "start the daemon"
        if unused_file_fix is not None:
            effect = "the daemon refuses to start; other commands run without the file"
            rest = "" if len(problems) == 1 else f", edit {path} as each other problem says"
            fix = f"{unused_file_fix}{rest}, then: {then}"
        else:
            effect = "the daemon refuses to start; other commands use defaults for these"
            fix = f"edit {path} as each problem says, then: {then}"
        return Check(
            "config",
            FAIL,
            f"{len(problems)} {'problem' if len(problems) == 1 else 'problems'}: {listed} "
            f"({effect})",
            fix,
        )
    if not exists:
        return Check("config", OK, f"no config file at {path}: defaults and the environment")
    return Check("config", OK, f"{path} reads without a problem")


def config_private(facts: PathFacts, holds_key: bool, my_uid: int) -> Check:
    path = facts.path
    if not facts.exists:
        return Check("config_private", OK, "no config file")
    mode = facts.permissions
    if facts.uid != my_uid:
        return Check(
            "config_private",
            FAIL,
            f"{path} belongs to uid {facts.uid}, not you: its owner decides where your data goes",
            f"cp {path} {path}.mine && mv {path}.mine {path} && chmod 600 {path}",
        )
    if holds_key and mode & 0o077:
        return Check(
            "config_private",
            FAIL,
            f"{path} holds an API key and others can read it (mode {mode:o}); "
            "the daemon refuses to start and other commands run without the file",
            f"chmod 600 {path}",
        )
    if mode & 0o022:
        return Check(
            "config_private",
            FAIL,
            f"others can change {path} (mode {mode:o}), and with it where your events go; "
            "the daemon refuses to start and other commands run without the file",
            f"chmod 600 {path}",
        )
    held = "holds an API key; " if holds_key else ""
    return Check("config_private", OK, f"{path} {held}mode {mode:o}, yours")


def daemon(
    pid: int | None,
    answered: bool,
    error: str | None,
    service_running: bool,
    buffer_writer: int | None = None,
    runtime_dir: Path | None = None,
) -> Check:
    """`buffer_writer`: the pid holding the buffer's own lock, which a daemon serving another
    runtime folder (another `XDG_RUNTIME_DIR`) holds too."""
    if pid is None and buffer_writer is not None:
        # Starting one here would only be refused: the buffer has its writer.
        return Check(
            "daemon",
            FAIL,
            f"pid {buffer_writer} holds the buffer, but no daemon serves {runtime_dir}: it "
            "was started with another runtime folder (XDG_RUNTIME_DIR, AGENT_TELEMETRY_HOME), "
            "so agents here cannot reach it and spool their events",
            f"kill {buffer_writer}; then start it where agents look: {START_DAEMON}",
        )
    if pid is None:
        if service_running:
            return Check("daemon", WARN, "the service runs but holds no daemon lock")
        return Check(
            "daemon",
            FAIL,
            "not running: events agents send now are not taken (the shims keep them in their "
            "spool until it runs)",
            START_DAEMON,
        )
    if not answered:
        return Check(
            "daemon",
            FAIL,
            f"running (pid {pid}) but it does not answer on api.sock: {error}",
            f"kill {pid}; then: agent-telemetry daemon (or let the service restart it)",
        )
    return Check("daemon", OK, f"running (pid {pid}) and answering")


def _socket_problems(
    runtime: PathFacts, files: list[PathFacts], my_uid: int, daemon_running: bool
) -> list[str]:
    problems = []
    if runtime.exists:
        if runtime.uid != my_uid:
            problems.append(f"{runtime.path} belongs to uid {runtime.uid}")
        if runtime.permissions != 0o700:
            problems.append(f"{runtime.path} is mode {runtime.permissions:o}, not 700")
    for sock in files:
        if not sock.exists:
            if daemon_running:
                problems.append(f"{sock.path} is missing")
        elif not stat.S_ISSOCK(sock.mode):
            problems.append(f"{sock.path} is not a socket")
        elif sock.uid != my_uid:
            problems.append(f"{sock.path} belongs to uid {sock.uid}")
        elif sock.permissions & 0o077:
            problems.append(f"{sock.path} is mode {sock.permissions:o}, not 600")
    return problems


def sockets(runtime: PathFacts, files: list[PathFacts], my_uid: int, daemon_running: bool) -> Check:
    problems = _socket_problems(runtime, files, my_uid, daemon_running)
    if problems:
        fix = (
            "agent-telemetry daemon recreates them at start; stop it, then: "
            f"rm -rf {runtime.path} and start it again"
        )
        return Check("sockets", FAIL, "; ".join(problems), fix)
    present = [f for f in files if f.exists]
    if not daemon_running and present:
        return Check(
            "sockets",
            OK,
            f"{len(present)} socket file(s) left in {runtime.path} with no daemon: "
            "the next start removes or (under the socket unit) uses them",
        )
    if not daemon_running:
        return Check("sockets", OK, f"none yet in {runtime.path} (the daemon makes them)")
    return Check(
        "sockets", OK, f"{', '.join(f.path.name for f in files)}: 600, yours, in a 700 folder"
    )


def port(
    configured: int | None,
    running_url: str | None,
    daemon_running: bool,
    probe: str | None,
    held_by_socket_unit: bool,
    unavailable: str | None = None,
) -> Check:
    """`probe`: None when the port answered (running) or is free (stopped), else why not;
    `unavailable`: why the running daemon has no HTTP listener, as it says."""
    if configured is None:
        return Check("port", OK, "loopback HTTP is off (http_port = off): agents use the sockets")
    if daemon_running:
        if running_url is None and unavailable is not None:
            return Check(
                "port",
                FAIL,
                f"the daemon runs on its sockets only: {unavailable}; agents that post to "
                f"127.0.0.1:{configured} (OpenTelemetry exporters, PostHog SDKs) reach the "
                "program that holds it, not the daemon",
                f"set another port: http_port = {configured + 1} in the config (or "
                f"AGENT_TELEMETRY_HTTP_PORT={configured + 1}), restart the daemon (run as a "
                "service: agent-telemetry service install, which moves its socket unit too), "
                "and point those agents at it (agent-telemetry otel-env)",
            )
        if running_url is None:
            return Check(
                "port",
                FAIL,
                f"http_port is {configured} but the daemon has no HTTP listener",
                "see the daemon's log (journalctl --user -u agent-telemetry), then restart it",
            )
        if probe is not None:
            return Check(
                "port",
                FAIL,
                f"{running_url} does not answer: {probe}",
                "restart the daemon: agent-telemetry service install (or agent-telemetry daemon)",
            )
        return Check("port", OK, f"{running_url} answers")
    if configured == 0:
        return Check("port", OK, "http_port = 0: the daemon picks a free port at start")
    if probe is None:
        return Check("port", OK, f"127.0.0.1:{configured} is free for the daemon")
    if held_by_socket_unit:
        return Check(
            "port",
            OK,
            f"127.0.0.1:{configured} is held by the service's agent-telemetry-http.socket",
        )
    return Check(
        "port",
        FAIL,
        f"127.0.0.1:{configured} is taken by another program ({probe}): the daemon would "
        "start on its sockets only",
        "set another port: http_port = 7469 in the config (or AGENT_TELEMETRY_HTTP_PORT=7469)",
    )


def service(facts: Mapping[str, Any] | None, error: str | None = None) -> Check:
    if facts is None:
        return Check("service", WARN, f"cannot ask the service manager: {error}")
    if not facts.get("manager"):
        return Check(
            "service",
            WARN,
            f"no user service manager: {facts.get('manager_detail')}",
            "start it yourself at login: agent-telemetry daemon (e.g. from ~/.profile)",
        )
    if facts.get("outdated"):
        # Before "not installed": an older install may lack files this version adds.
        names = ", ".join(Path(path).name for path in facts["outdated"])
        return Check(
            "service",
            WARN,
            f"installed, but {names} not as this version writes them (written by an older "
            "version, or settings changed since); the service manager runs them as they are",
            "agent-telemetry service install (it updates them and restarts what changed)",
        )
    if not facts.get("installed"):
        return Check(
            "service",
            WARN,
            "not installed: the daemon runs only while you run it",
            "agent-telemetry service install",
        )
    if not facts.get("enabled"):
        return Check(
            "service",
            WARN,
            "installed but not enabled: it will not start at login",
            "agent-telemetry service install (it enables what it installs)",
        )
    # Imported here: the unit renderers are not needed by the other checks.
    from agent_telemetryd.service.render import HTTP_SOCKET_UNIT

    states = {unit.get("name"): str(unit.get("state", "")) for unit in facts.get("units", [])}
    if states.get(HTTP_SOCKET_UNIT, "").startswith("failed"):
        # Its own unit: the Unix sockets, and so the shims, are not affected.
        return Check(
            "service",
            WARN,
            f"installed and enabled, but {HTTP_SOCKET_UNIT} failed (most often its port is "
            "taken by another program): agents using ingest.sock are not affected; the "
            "daemon binds http_port itself when it starts, if that port is free",
            f"see why: systemctl --user status {HTTP_SOCKET_UNIT}; to move the port, set "
            "http_port in the config (or AGENT_TELEMETRY_HTTP_PORT in the service's env "
            "file), then run agent-telemetry service install (it moves the unit and restarts "
            "the daemon on it)",
        )
    return Check("service", OK, "installed and enabled")


def consent(
    mode: str,
    source: str,
    reason: str,
    sender: str,
    unreadable: str | None = None,
    untrusted: str | None = None,
) -> Check:
    """`unreadable`: what is wrong with the stored consent record, when it cannot be read;
    `untrusted`: whose it may be, when someone else may have written it (it is not used)."""
    detail = f"{mode}, decided by {source}: {reason}"
    if untrusted is not None:
        if "so it is not used" not in reason:
            detail = f"{detail}; {untrusted}, so it is not used"
        return Check(
            "consent",
            WARN,
            detail,
            "set your choice again, which writes a record of your own: agent-telemetry mode "
            "off|local|upload (if the folder is shared with others, first point "
            "AGENT_TELEMETRY_CONFIG at a folder of your own)",
        )
    if unreadable is not None:
        if not reason.startswith("consent record unreadable"):
            # The environment decides, or a running daemon read the record before it broke.
            detail = f"consent record unreadable: {unreadable}; for now {detail}"
        return Check(
            "consent",
            FAIL,
            detail,
            "set your choice again: agent-telemetry mode off|local|upload "
            "(the unreadable file is kept beside the new record)",
        )
    if mode == "upload" and sender == "none":
        return Check(
            "consent",
            WARN,
            f"{detail}; but no backend is configured, so events pile up pending",
            "set [http] endpoint and api_key (or [posthog] api_key) in the config, "
            "then: agent-telemetry reload",
        )
    if source in ("DO_NOT_TRACK", "CI"):
        variable = "DO_NOT_TRACK" if source == "DO_NOT_TRACK" else "CI"
        return Check(
            "consent",
            WARN,
            f"{detail} (you chose upload, the environment caps it)",
            f"unset {variable} in the daemon's environment"
            + (", or set AGENT_TELEMETRY_MODE=upload there" if variable == "CI" else ""),
        )
    return Check("consent", OK, detail)


def sender(name: str, backend: str, mode: str, reachable: bool, detail: str) -> Check:
    if name == "none":
        if mode == "upload":
            return Check(
                "sender",
                WARN,
                "none: uploads are on but nothing is sent",
                "set [http] endpoint and api_key (or [posthog] api_key) in the config, "
                "then: agent-telemetry reload",
            )
        return Check("sender", OK, "none configured (nothing is uploaded in this mode anyway)")
    if reachable:
        return Check("sender", OK, f"{backend}: {detail}")
    if name == "file":
        return Check(
            "sender", FAIL, f"{backend}: {detail}", "set file.path to a folder you can write"
        )
    if "HTTP 401" in detail or "HTTP 403" in detail:
        key = "[http] api_key / TELEMETRY_API_KEY" if name == "http" else "[posthog] api_key"
        return Check("sender", FAIL, f"{backend}: {detail}", f"check the key: {key}")
    where = "[http] endpoint / TELEMETRY_ENDPOINT" if name == "http" else "[posthog] host"
    return Check(
        "sender",
        FAIL,
        f"{backend} is not reachable: {detail}; events stay pending until it is",
        f"check {where} and that the backend is up, then: agent-telemetry flush",
    )


def sender_of_unused_file(fix: str) -> Check:
    """No sender because the config file that may name one is not used (see `config`)."""
    return Check(
        "sender",
        WARN,
        "none while the config file is not used (see the config check): "
        "no backend or key in it is used",
        fix,
    )


def tcp_peers(protection: str | None, http_on: bool) -> Check:
    if not http_on:
        return Check("tcp_peers", OK, "no TCP listener: only your own sockets")
    if protection in ("uid", "uid+token"):
        return Check(
            "tcp_peers", OK, f"{protection}: other users on this machine are refused on TCP"
        )
    if protection == "token":
        return Check("tcp_peers", OK, "token: TCP ingest needs the per-install token")
    return Check(
        "tcp_peers",
        WARN,
        "off: another user on this machine could post events to the TCP port",
        "if your agents use the sockets, turn TCP off: http_port = off",
    )
