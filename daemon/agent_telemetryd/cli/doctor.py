"""doctor: every check a user would otherwise do by hand, each with a verdict and the fix.

This module finds the facts (files, sockets, the daemon's answer, the backend's, the disk,
the buffer); `checks` turns each into a verdict. Nothing here changes anything, and every
probe is bounded in time: a hung backend or a huge buffer makes a check say so, not hang.
"""

from __future__ import annotations

import os
import shutil
import socket
import sqlite3
import time
import urllib.error
import urllib.request
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import click

from agent_telemetryd.cli import checks, data_checks, otlp_checks
from agent_telemetryd.cli.api_client import ApiClient, ApiError, DaemonUnavailableError
from agent_telemetryd.cli.checks import Check, PathFacts
from agent_telemetryd.cli.common import get_config, json_option, print_json
from agent_telemetryd.config import Config, read_config
from agent_telemetryd.consent import UnreadableConsent, UntrustedConsent, decide, read_stored
from agent_telemetryd.lock import running_pid
from agent_telemetryd.otlp.grpc_extra import GRPC_MISSING, grpc_installed
from agent_telemetryd.senders.factory import default_file_path
from agent_telemetryd.store import offline_reads, queries
from agent_telemetryd.store.database import check_pages, connect, quick_check
from agent_telemetryd.store.migrations import newer_schema

PROBE_SECONDS = 5.0
INTEGRITY_SECONDS = 10.0
SPOOL_FOLDER = "spool"
_MAX_SPOOL_ENTRIES = 100_000  # counted, not listed: a huge spool must not slow doctor
_KEY_SETTINGS = ("posthog_api_key", "posthog_personal_api_key", "http_api_key")


@click.command()
@json_option
def doctor(as_json: bool) -> None:
    """Check the daemon, sockets, port, service, consent, sender, config, disk, buffer,
    spool and clock; print each verdict (ok, warn, fail) with the exact fix.

    Exits 1 when a check fails. Changes nothing; each probe gives up after a few seconds.

    \b
    Example:
        agent-telemetry doctor --json
    """
    config = get_config(from_doctor=True)  # warns of a broken config; a check names it too
    found = run_checks(config)
    failed = sum(1 for check in found if check.verdict == checks.FAIL)
    warned = sum(1 for check in found if check.verdict == checks.WARN)
    if as_json:
        print_json(
            {
                "ok": failed == 0,
                "summary": {"ok": len(found) - failed - warned, "warn": warned, "fail": failed},
                "checks": [check.as_dict() for check in found],
            }
        )
    else:
        click.echo(render(found, failed, warned))
    if failed:
        raise SystemExit(1)


def render(found: list[Check], failed: int, warned: int) -> str:
    width = max(len(check.name) for check in found)
    lines = []
    for check in found:
        lines.append(f"{check.verdict.upper():<4}  {check.name:<{width}}  {check.detail}")
        if check.fix:
            lines.append(f"{'':<4}  {'':<{width}}  fix: {check.fix}")
    if failed or warned:
        lines.append(f"{failed} failed, {warned} to look at.")
    else:
        lines.append("Everything looks right.")
    return "\n".join(lines)


def run_checks(config: Config) -> list[Check]:
    paths = config.paths
    uid = os.getuid()
    _, problems = read_config(paths=paths)
    config_file = _stat(paths.config_file)
    # An unsafe file's keys are not in `config`: the problem says whether it holds one.
    holds_key = any(p.exposes_secret for p in problems) or any(
        config.source_of(name) == "config" for name in _KEY_SETTINGS
    )
    unused = [p for p in problems if p.file_not_used]
    pid = running_pid(paths.lock_file)
    # Held by this folder's daemon too; without one, by a daemon elsewhere or a command.
    buffer_writer = running_pid(paths.buffer_lock)
    buffer_busy = pid is not None or buffer_writer is not None
    status, status_error = _daemon_status(config) if pid is not None else (None, None)
    service, service_error = _service_facts()
    running = pid is not None and status is not None
    service_running = bool(service and service.get("running"))

    found = [
        checks.daemon(
            pid,
            status is not None,
            status_error,
            service_running,
            buffer_writer,
            paths.runtime_dir,
        ),
        checks.config_valid(
            paths.config_file,
            config_file.exists,
            [str(p) for p in problems],
            pid is not None,
            # Set first: until the file is safe, what else is wrong in it does not matter.
            unused[0].fix if unused else None,
            only_unknown=all(p.unknown_to_this_version for p in problems),
        ),
        checks.config_private(config_file, holds_key, uid),
        checks.sockets(
            _stat(paths.runtime_dir),
            [_stat(paths.ingest_socket), _stat(paths.api_socket)],
            uid,
            pid is not None,
        ),
        _port_check(config, status, pid is not None, service),
        *_otlp_checks(config, status, pid is not None),
        checks.service(service, service_error),
        _consent_check(config, status),
    ]
    sender_check, backend_skew = _sender_check(config, status, unused[0].fix if unused else None)
    found.append(sender_check)
    found.append(_disk_check(config))
    found.append(_buffer_check(config, buffer_busy))
    found.append(_spool_check(config, running))
    found.append(
        data_checks.clock(
            time.time_ns() // 1_000_000, _newest_event(config, buffer_busy), backend_skew
        )
    )
    if status is not None and "tcp_peer_check" in status:
        found.append(checks.tcp_peers(status["tcp_peer_check"], bool(status["paths"]["http"])))
    return found


# --- facts -------------------------------------------------------------------------------


def _stat(path: Path) -> PathFacts:
    try:
        info = path.lstat()
    except OSError:
        return PathFacts(path, False)
    return PathFacts(path, True, info.st_mode, info.st_uid)


def _daemon_status(config: Config) -> tuple[dict[str, Any] | None, str | None]:
    try:
        answer = ApiClient(config.paths.api_socket, timeout=PROBE_SECONDS).json("GET", "/v1/status")
    except (ApiError, DaemonUnavailableError) as error:
        return None, str(error)
    return dict(answer), None


def _service_facts() -> tuple[dict[str, Any] | None, str | None]:
    # Imported here: the service helpers pull in the unit renderers, which other
    # commands do not need.
    from agent_telemetryd.service.manager import service_status

    try:
        return service_status().to_dict(), None
    except Exception as error:  # a broken manager must not stop the other checks
        return None, f"{type(error).__name__}: {error}"


def _port_check(
    config: Config, status: dict[str, Any] | None, pid_found: bool, service: Any
) -> Check:
    if status is not None:
        url = status["paths"]["http"]
        configured = config.http_port if url is None else int(url.rsplit(":", 1)[1])
        probe = _tcp_answer(url) if url else None
        return checks.port(configured, url, True, probe, False, status.get("http_unavailable"))
    if config.http_port in (None, 0):
        return checks.port(config.http_port, None, False, None, False)
    from agent_telemetryd.service.render import HTTP_SOCKET_UNIT

    # The port's own unit: agent-telemetry.socket listening says nothing of the port.
    held = any(
        unit.get("name") == HTTP_SOCKET_UNIT and str(unit.get("state", "")).startswith("active")
        for unit in (service or {}).get("units", [])
    )
    probe = _port_taken(config.http_host, config.http_port)
    return checks.port(config.http_port, None, pid_found, probe, held)


def _otlp_checks(config: Config, status: dict[str, Any] | None, pid_found: bool) -> list[Check]:
    """One check for each OTLP listener configured here or present in the running daemon:
    its status says where it listens or why it could not. With no daemon, whether it could:
    the port probed, and for gRPC whether the extra is there."""
    if status is None and pid_found:
        return []  # a daemon that does not answer holds its ports: the daemon check says why
    section = (status or {}).get("otlp") or {}
    found = []
    for transport, configured in (("http", config.otlp_http_port), ("grpc", config.otlp_grpc_port)):
        listening, problem = section.get(transport), section.get(f"{transport}_unavailable")
        if status is None and configured is not None:
            problem = _otlp_obstacle(config, transport, configured)
        elif configured is None and listening is None and problem is None:
            continue  # not asked for here, and the running daemon has none either
        running = status is not None
        found.append(otlp_checks.otlp_port(transport, configured, running, listening, problem))
    return found


def _otlp_obstacle(config: Config, transport: str, port: int) -> str | None:
    """What would keep a daemon started now from this OTLP listener, if anything."""
    if transport == "grpc" and not grpc_installed():
        return GRPC_MISSING
    taken = _port_taken(config.http_host, port) if port != 0 else None
    if taken is None:
        return None
    host = f"[{config.http_host}]" if ":" in config.http_host else config.http_host
    return f"{host}:{port} is taken by another program ({taken})"


def _tcp_answer(url: str) -> str | None:
    status, _, error = _http_get(f"{url}/healthz", {})
    if status == 200:
        return None
    return error or f"HTTP {status}"


def _port_taken(host: str, port: int | None) -> str | None:
    probe = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    try:
        probe.bind((host, port or 0))
    except OSError as error:
        return error.strerror or str(error)
    finally:
        probe.close()
    return None


def _consent_check(config: Config, status: dict[str, Any] | None) -> Check:
    stored = read_stored(config.paths.consent_file)
    # Failed whoever decides now: the record is what the next start reads.
    unreadable = str(stored) if isinstance(stored, UnreadableConsent) else None
    untrusted = str(stored) if isinstance(stored, UntrustedConsent) else None
    if status is not None:  # the running daemon's own view: its environment may differ
        return checks.consent(
            status["mode"],
            status["mode_source"],
            status["mode_reason"],
            status["sender"],
            unreadable,
            untrusted,
        )
    state = decide(config, stored)
    return checks.consent(
        state.mode, state.source, state.reason, config.sender, unreadable, untrusted
    )


def _sender_check(
    config: Config, status: dict[str, Any] | None, unused_file_fix: str | None
) -> tuple[Check, float | None]:
    mode = (
        status["mode"]
        if status is not None
        else decide(config, read_stored(config.paths.consent_file)).mode
    )
    name = config.sender
    if name == "none" and unused_file_fix is not None:
        return checks.sender_of_unused_file(unused_file_fix), None
    if name == "none":
        return checks.sender("none", "", mode, False, ""), None
    if name == "file":
        target = config.file_path or default_file_path(config)
        folder = target.parent
        writable = folder.is_dir() and os.access(folder, os.W_OK)
        detail = f"writes {target}" if writable else f"cannot write in {folder}"
        return checks.sender("file", f"file {target}", mode, writable, detail), None
    if name == "http":
        endpoint = (config.http_endpoint or "").rstrip("/")
        headers = {"Authorization": f"Bearer {config.http_api_key}"} if config.http_api_key else {}
        url, backend = f"{endpoint}/api/v1/telemetry/health", f"http {endpoint}"
    else:
        host = config.posthog_host.rstrip("/")
        # Reachability only: anything that would carry the key or an id is not sent.
        url, backend, headers = f"{host}/", f"posthog {host}", {}
    code, date, error = _http_get(url, headers)
    skew = None
    if date is not None:
        try:
            skew = parsedate_to_datetime(date).timestamp() - time.time()
        except (TypeError, ValueError):
            skew = None
    if code is None:
        return checks.sender(name, backend, mode, False, error or "no answer"), skew
    if name == "http":
        reachable = 200 <= code < 300
        detail = "health answered 200" if reachable else f"health answered HTTP {code}"
    else:
        reachable, detail = True, f"answered HTTP {code}"
    return checks.sender(name, backend, mode, reachable, detail), skew


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # a redirect is an answer: report it, do not follow it elsewhere


def _http_get(url: str, headers: dict[str, str]) -> tuple[int | None, str | None, str | None]:
    """(status, Date header, error): never raises, never follows a redirect, no proxy."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirect())
    request = urllib.request.Request(url, headers={"User-Agent": "agent-telemetry", **headers})
    try:
        with opener.open(request, timeout=PROBE_SECONDS) as response:
            return response.status, response.headers.get("Date"), None
    except urllib.error.HTTPError as error:
        return error.code, error.headers.get("Date"), None
    except (urllib.error.URLError, OSError, ValueError) as error:
        reason = getattr(error, "reason", error)
        if isinstance(reason, TimeoutError | socket.timeout):
            return None, None, f"no answer within {PROBE_SECONDS:.0f} s"
        # The class and the OS's words: never the URL's query or a header.
        text = getattr(reason, "strerror", None) or type(reason).__name__
        return None, None, f"network error ({text})"


def _disk_check(config: Config) -> Check:
    place = config.paths.data_dir
    while not place.exists() and place != place.parent:
        place = place.parent
    usage = shutil.disk_usage(place)
    database = config.paths.database
    size = sum(
        Path(f"{database}{suffix}").stat().st_size
        for suffix in ("", "-wal")
        if Path(f"{database}{suffix}").exists()
    )
    return data_checks.disk(place, usage.free, usage.total, size, config.max_bytes)


def _buffer_check(config: Config, daemon_running: bool) -> Check:
    database = config.paths.database
    if not database.exists():
        return data_checks.buffer(database, False, "ok", ())
    if daemon_running:
        result = quick_check(database, INTEGRITY_SECONDS)
        return data_checks.buffer(database, True, result.state, result.messages)
    # The daemon down: the file as it is, without a write-ahead log that is not its own.
    try:
        reader = offline_reads.open_reader(database)
    except sqlite3.Error as error:
        return data_checks.buffer(database, True, "unreadable", (str(error),))
    try:
        result = check_pages(reader.conn, INTEGRITY_SECONDS)
        newer = newer_schema(reader.conn, database) if result.state == "ok" else None
    finally:
        reader.conn.close()
    if newer is not None:
        return data_checks.newer_buffer(newer)
    if result.state == "ok" and reader.foreign_wal is not None:
        return data_checks.foreign_wal(database, reader.foreign_wal)
    return data_checks.buffer(database, True, result.state, result.messages)


def _spool_check(config: Config, running: bool) -> Check:
    folder = config.paths.data_dir / SPOOL_FOLDER
    files = size = 0
    try:
        with os.scandir(folder) as entries:
            for entry in entries:
                if files >= _MAX_SPOOL_ENTRIES:
                    break
                if entry.is_file(follow_symlinks=False):
                    files += 1
                    size += entry.stat(follow_symlinks=False).st_size
    except OSError:
        pass  # no spool folder: nothing waits
    return data_checks.spool(folder, files, size, running)


def _newest_event(config: Config, daemon_running: bool) -> int | None:
    database = config.paths.database
    if not database.exists():
        return None
    try:
        if daemon_running:
            conn = connect(database, readonly=True)
        else:
            conn = offline_reads.open_reader(database).conn
    except sqlite3.Error:
        return None
    try:
        return queries.newest_received_ms(conn)
    except sqlite3.Error:
        return None  # the buffer check says what is wrong with it
    finally:
        conn.close()
