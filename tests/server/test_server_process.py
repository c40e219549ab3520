"""The real `agent-telemetry-server` process: CLI, graceful stop, and no client address
anywhere — not in its logs, not in any table."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import orjson
import pytest
from server_helpers import (
    CLIENT_ADDRESS,
    INGEST_KEYS,
    READ_KEY,
    SERVER_SCRIPT,
    Running,
    client_session,
    make_batch,
    make_event,
    raw_request,
    serve,
    server_env,
)

from agent_telemetry_server.testing import TemporaryPostgres, create_database, free_port

CANARY = "canary-property-value-7f3e"


def _cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [SERVER_SCRIPT, *args], capture_output=True, text=True, timeout=60, env=server_env(**env)
    )


@pytest.fixture
async def process(
    database_url: str, tmp_path: Path
) -> AsyncIterator[tuple[Running, subprocess.Popen[bytes], Path]]:
    port = free_port()
    log_path = tmp_path / "server.log"
    session = client_session()
    try:
        with serve(database_url, log_path, port) as proc:
            yield Running(f"http://127.0.0.1:{port}", None, session), proc, log_path
    finally:
        await session.close()


async def test_no_client_address_in_logs_or_tables(
    process: tuple[Running, subprocess.Popen[bytes], Path], database_url: str
) -> None:
    server, proc, log_path = process
    gone = str(uuid.uuid4())
    kept = str(uuid.uuid4())
    events = [make_event(properties={"note": CANARY, "duration_ms": 5}) for _ in range(3)]
    status, body, _ = await server.post_batch(make_batch(events, kept), idempotency_key="p1")
    assert (status, body["accepted"]) == (200, 3)
    await server.post_batch(make_batch(events, kept), idempotency_key="p1")  # replay
    await server.post_batch(make_batch([make_event(), {"event": CANARY}], gone))
    await server.post_batch(make_batch([]), key="wrong-key-" + CANARY)  # 401
    await server.post_batch(None, raw=b"{" + CANARY.encode())  # 400
    await server.get("/api/v1/analytics/performance")
    await server.delete_user(gone)
    # A request aiohttp itself rejects, which its own logger would report with the peer.
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", int(server.url.rsplit(":", 1)[1]), local_addr=(CLIENT_ADDRESS, 0)
    )
    writer.write(b"BOGUS / HTTP/1.1\r\nHost: x\r\nContent-Length: nope\r\n\r\n")
    await writer.drain()
    await reader.read(1000)
    writer.close()

    # Graceful stop: SIGTERM, exit 0, a last log line.
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=15) == 0
    log = log_path.read_text()
    lines = [orjson.loads(line) for line in log.splitlines() if line.strip()]
    assert any(line.get("route") == "/api/v1/telemetry/users/{anonymous_id}" for line in lines)
    assert lines[-1]["event"] == "stopped"
    for secret in (CLIENT_ADDRESS, CANARY, INGEST_KEYS[0], READ_KEY, gone, kept):
        assert secret not in log, secret

    conn = await asyncpg.connect(database_url)
    try:
        tables = [
            r["tablename"]
            for r in await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        ]
        assert {"events", "rollup_daily", "idempotency_keys", "schema_migrations"} <= set(tables)
        dump = []
        for table in tables:
            dump += [r[0] for r in await conn.fetch(f'SELECT t::text FROM "{table}" AS t')]
    finally:
        await conn.close()
    everything = "\n".join(dump)
    assert kept in everything  # the dump does hold the data...
    assert CLIENT_ADDRESS not in everything  # ...but never the client's address


async def test_malformed_requests_are_logged_without_what_they_quoted(
    process: tuple[Running, subprocess.Popen[bytes], Path],
) -> None:
    """aiohttp's protocol errors quote the offending line; the log gets their type only."""
    server, proc, log_path = process
    secret = "SECRETik1"
    anonymous_id = str(uuid.uuid4())
    malformed = [
        # A control character in a header: aiohttp's error repeats the whole header line.
        b"POST /api/v1/telemetry/batch HTTP/1.1\r\nHost: x\r\n"
        b"Authorization: Bearer " + secret.encode() + b"\x01zz\r\n\r\n",
        # A bad request line that holds an anonymous id in its path.
        b"DELETE /api/v1/telemetry/users/" + anonymous_id.encode() + b"\x01 HTTP/1.1\r\n"
        b"Host: x\r\n\r\n",
        # A header line that is too long, the key in it.
        b"GET / HTTP/1.1\r\nX-Key: " + (secret * 2000).encode() + b"\r\n\r\n",
    ]
    for request in malformed:
        answer = await raw_request(server.url, request)
        assert answer.split(b" ", 2)[1] == b"400", answer[:100]

    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=15) == 0
    log = log_path.read_text()
    for text in (secret, anonymous_id, CLIENT_ADDRESS, "Traceback"):
        assert text not in log, text
    lines = [orjson.loads(line) for line in log.splitlines() if line.strip()]
    refused = [line for line in lines if line["logger"] == "aiohttp.server"]
    assert len(refused) == len(malformed)
    assert {line["level"] for line in refused} == {"warning"}
    assert all(line["error_type"] for line in refused)


def test_migrate_command(postgres: TemporaryPostgres) -> None:
    name = f"cli_{uuid.uuid4().hex[:8]}"
    asyncio.run(create_database(postgres.dsn(), name))
    first = _cli("migrate", "--database-url", postgres.dsn(name))
    assert first.returncode == 0, first.stderr
    assert first.stdout.splitlines()[:2] == [
        "applied 0001_meta.sql",
        "applied 0002_events.plain.sql",
    ]
    again = _cli("migrate", DATABASE_URL=postgres.dsn(name))
    assert (again.returncode, again.stdout) == (0, "database is up to date\n")


def test_user_mistakes_are_one_line_without_traceback(tmp_path: Path) -> None:
    cases = [
        (("serve",), 1, "no database"),
        (("serve", "--database-url", "postgresql://x@127.0.0.1:1/x"), 1, "no ingest keys"),
        (("migrate", "--database-url", f"postgresql://x@127.0.0.1:{free_port()}/x"), 3, "Error:"),
        (("serve", "--config", str(tmp_path / "missing.toml")), 1, "config file not found"),
    ]
    for args, code, text in cases:
        result = _cli(*args)
        assert result.returncode == code, (args, result.stderr)
        assert text in result.stderr
        assert "Traceback" not in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_command_line_values_are_checked_like_config_values(
    postgres: TemporaryPostgres, tmp_path: Path
) -> None:
    """A port that cannot exist, a URL that is not one, a retention run every second: one
    line, exit 1 (a configuration mistake), and the database is not even migrated."""
    name = f"cli_{uuid.uuid4().hex[:8]}"
    asyncio.run(create_database(postgres.dsn(), name))
    url = postgres.dsn(name)
    every_second = tmp_path / "every-second.toml"
    every_second.write_text("retention_interval_seconds = 0\n")
    cases = [
        (("serve", "--port", "99999", "--database-url", url), "port 99999: must be from 1 to"),
        (("serve", "--port", "-5", "--database-url", url), "port -5: must be from 1 to"),
        (("serve", "--port", "0", "--database-url", url), "port 0: must be from 1 to"),
        (("serve", "--database-url", "notaurl"), "database URL must start with postgresql://"),
        (("migrate", "--database-url", "notaurl"), "database URL must start with postgresql://"),
        (("serve", "--database-url", "postgresql://h:5432x/db"), "database URL has a port"),
        (("serve", "--database-url", url, "--config", str(every_second)),
         "retention_interval_seconds 0: must be from 60 to 86400"),
    ]  # fmt: skip
    for args, text in cases:
        result = _cli(*args, TELEMETRY_API_KEYS="k1")
        assert result.returncode == 1, (args, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"Error: {text}"), (args, lines)
    assert asyncio.run(_tables(url)) == []
    # A well-formed URL of a database that is not there is still "could not start".
    unreachable = f"postgresql://x@127.0.0.1:{free_port()}/x"
    result = _cli(
        "serve", "--database-url", unreachable, TELEMETRY_API_KEYS="k1", TELEMETRY_READ_KEYS="r1"
    )
    assert result.returncode == 3, result.stderr
    assert result.stderr.startswith("Error: ConnectionRefusedError"), result.stderr


async def _tables(url: str) -> list[str]:
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
    finally:
        await conn.close()
    return [r["tablename"] for r in rows]


def test_config_with_keys_must_not_be_readable_by_others(tmp_path: Path) -> None:
    config = tmp_path / "server.toml"
    config.write_text('api_keys = ["k1"]\ndatabase_url = "postgresql://u:pw@db/x"\n')
    config.chmod(0o644)
    result = _cli("migrate", "--config", str(config))
    assert result.returncode == 1
    assert "chmod 600" in result.stderr
