"""Helpers shared by the server tests: settings, an HTTP client from 127.0.0.2, event makers."""

from __future__ import annotations

import asyncio
import gzip
import os
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import orjson
from multidict import CIMultiDictProxy

from agent_telemetry_server.config import Settings

CLIENT_ADDRESS = "127.0.0.2"
INGEST_KEYS = ("ingest-key-old", "ingest-key-new")
READ_KEY = "read-key-1"


def base_settings(database_url: str, **changes: Any) -> Settings:
    settings = Settings(
        database_url=database_url,
        api_keys=INGEST_KEYS,
        read_keys=(READ_KEY,),
        key_rate=None,
        anonymous_id_rate=None,
        retention_interval_seconds=3600,
    )
    return replace(settings, **changes)


@dataclass
class Running:
    """An in-process server and a client session whose requests come from 127.0.0.2."""

    url: str
    app: Any
    session: aiohttp.ClientSession

    async def post_batch(
        self,
        body: Any,
        key: str | None = INGEST_KEYS[0],
        idempotency_key: str | None = None,
        compress: bool = True,
        raw: bytes | None = None,
    ) -> tuple[int, Any, CIMultiDictProxy[str]]:
        data = raw if raw is not None else orjson.dumps(body)
        headers = {"Content-Type": "application/json"}
        if compress:
            data = gzip.compress(data)
            headers["Content-Encoding"] = "gzip"
        if key is not None:
            headers["Authorization"] = f"Bearer {key}"
        if idempotency_key is not None:
            headers["Idempotency-Key"] = idempotency_key
        async with self.session.post(
            f"{self.url}/api/v1/telemetry/batch", data=data, headers=headers
        ) as resp:
            return resp.status, await _json(resp), resp.headers

    async def get(self, path: str, key: str | None = READ_KEY) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        async with self.session.get(f"{self.url}{path}", headers=headers) as resp:
            return resp.status, await _json(resp)

    async def delete_user(self, anonymous_id: str, key: str = INGEST_KEYS[0]) -> tuple[int, Any]:
        async with self.session.delete(
            f"{self.url}/api/v1/telemetry/users/{anonymous_id}",
            headers={"Authorization": f"Bearer {key}"},
        ) as resp:
            return resp.status, await _json(resp)


async def _json(resp: aiohttp.ClientResponse) -> Any:
    text = await resp.read()
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return text.decode(errors="replace")


async def raw_request(url: str, request: bytes) -> bytes:
    """Send `request` byte for byte from 127.0.0.2 (aiohttp's client would refuse to send
    malformed ones); the answer, read until the server closes the connection, which it
    does only once it has finished with the request."""
    parts = urlsplit(url)
    reader, writer = await asyncio.open_connection(
        parts.hostname, parts.port, local_addr=(CLIENT_ADDRESS, 0)
    )
    try:
        writer.write(request)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), timeout=10)
    finally:
        writer.close()


def client_session() -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(local_addr=(CLIENT_ADDRESS, 0), force_close=True)
    )


def make_event(
    event: str = "agent.run.completed",
    properties: dict[str, Any] | None = None,
    timestamp: datetime | None = None,
    agent: str | None = "planner",
    **extra: Any,
) -> dict[str, Any]:
    ts = timestamp or datetime.now(UTC) - timedelta(minutes=5)
    body: dict[str, Any] = {
        "uuid": str(uuid.uuid4()),
        "event": event,
        "timestamp": ts.isoformat().replace("+00:00", "Z"),
        "properties": properties if properties is not None else {},
    }
    if agent is not None:
        body["agent"] = agent
    body.update(extra)
    return body


def make_batch(events: list[dict[str, Any]], anonymous_id: str | None = None) -> dict[str, Any]:
    return {"anonymous_id": anonymous_id or str(uuid.uuid4()), "events": events}


StartServer = Callable[..., Awaitable[Running]]


SERVER_SCRIPT = str(Path(sys.executable).parent / "agent-telemetry-server")


def server_env(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"DATABASE_URL", "TELEMETRY_API_KEYS", "TELEMETRY_READ_KEYS"}
    }
    env.update(extra)
    return env


@contextmanager
def serve(database_url: str, log_path: Path, port: int) -> Iterator[subprocess.Popen[bytes]]:
    """The real `agent-telemetry-server serve` on 127.0.0.1:port, healthy; killed at the end."""
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [SERVER_SCRIPT, "serve", "--port", str(port), "--database-url", database_url],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=server_env(TELEMETRY_API_KEYS=",".join(INGEST_KEYS), TELEMETRY_READ_KEYS=READ_KEY),
        )
    try:
        deadline = time.monotonic() + 15
        health = f"http://127.0.0.1:{port}/api/v1/telemetry/health"
        while True:
            try:
                with urllib.request.urlopen(health, timeout=2) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"server did not start: {log_path.read_text()[-2000:]}")
            time.sleep(0.1)
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
