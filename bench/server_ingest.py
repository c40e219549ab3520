"""Ingest throughput of agent-telemetry-server against bare asyncpg COPY, in one run.

    .venv/bin/python bench/server_ingest.py            # 100,000 events
    .venv/bin/python bench/server_ingest.py --quick    # 2,000 events (smoke)
    .venv/bin/python bench/server_ingest.py --database-url postgresql://...   # existing server

The server path: a real `agent-telemetry-server serve` subprocess receiving gzip batches of
100 from 8 concurrent clients; each batch is validated, COPYed into staging, deduped into
`events` and rolled up, and answered after commit. The anchor: one asyncpg
`copy_records_to_table` of the same rows into a table shaped like `events` (same indexes),
no dedupe, no rollups, no HTTP: the ceiling of the database itself.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gzip
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import orjson

from agent_telemetry_server.app import apply_migrations
from agent_telemetry_server.config import Settings
from agent_telemetry_server.testing import TemporaryPostgres, create_database, free_port
from agent_telemetry_server.validation import COLUMNS, parse_events

BATCH = 100
CONCURRENCY = 8
KEY = "bench-key"


def make_batches(total: int) -> list[dict[str, Any]]:
    now = datetime.now(UTC)
    anonymous_ids = [str(uuid.uuid4()) for _ in range(50)]
    batches = []
    for start in range(0, total, BATCH):
        events = [
            {
                "uuid": str(uuid.uuid4()),
                "event": ("agent.run.completed", "tool.call", "tool.call.failed")[i % 3],
                "timestamp": (now - timedelta(seconds=total - i)).isoformat(),
                "properties": {"duration_ms": i % 997, "model": "m-1", "tokens": i % 4096},
                "agent": ("planner", "coder", "reviewer")[i % 3],
            }
            for i in range(start, min(start + BATCH, total))
        ]
        batches.append({"anonymous_id": anonymous_ids[len(batches) % 50], "events": events})
    return batches


@contextlib.contextmanager
def server_process(database_url: str) -> Iterator[str]:
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "server.toml"
        config.write_text('key_rate = "off"\nanonymous_id_rate = "off"\n')
        env = {
            **os.environ,
            "TELEMETRY_API_KEYS": KEY,
            "AGENT_TELEMETRY_SERVER_CONFIG": str(config),
        }
        proc = subprocess.Popen(
            [sys.executable, "-m", "agent_telemetry_server", "serve", "--port", str(port),
             "--database-url", database_url],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            proc.terminate()
            proc.wait(timeout=20)


async def wait_healthy(session: aiohttp.ClientSession, url: str) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with contextlib.suppress(aiohttp.ClientError):
            async with session.get(f"{url}/api/v1/telemetry/health") as resp:
                if resp.status == 200:
                    return
        await asyncio.sleep(0.1)
    raise RuntimeError("server did not become healthy")


async def through_server(url: str, bodies: list[bytes]) -> float:
    headers = {
        "Authorization": f"Bearer {KEY}",
        "Content-Type": "application/json",
        "Content-Encoding": "gzip",
    }
    queue = list(enumerate(bodies))
    connector = aiohttp.TCPConnector(limit=CONCURRENCY)
    async with aiohttp.ClientSession(connector=connector) as session:
        await wait_healthy(session, url)

        async def worker() -> None:
            while queue:
                index, body = queue.pop()
                send = {**headers, "Idempotency-Key": f"bench-{index}"}
                async with session.post(
                    f"{url}/api/v1/telemetry/batch", data=body, headers=send
                ) as resp:
                    answer = await resp.json()
                    if resp.status != 200 or (answer["accepted"] != BATCH and answer["rejected"]):
                        raise RuntimeError(f"batch {index}: {resp.status} {answer}")

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
        return time.perf_counter() - started


async def bare_copy(database_url: str, rows: list[tuple[Any, ...]]) -> float:
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute("CREATE TABLE bench_copy (LIKE events INCLUDING ALL)")
        started = time.perf_counter()
        await conn.copy_records_to_table("bench_copy", records=rows, columns=COLUMNS)
        elapsed = time.perf_counter() - started
        assert await conn.fetchval("SELECT count(*) FROM bench_copy") == len(rows)
        return elapsed
    finally:
        await conn.close()


async def measure(admin_dsn: str, total: int) -> list[dict[str, Any]]:
    name = f"bench_{uuid.uuid4().hex[:8]}"
    await create_database(admin_dsn, name)
    database_url = admin_dsn.rsplit("/", 1)[0] + f"/{name}"
    await apply_migrations(Settings(database_url=database_url))
    batches = make_batches(total)
    bodies = [gzip.compress(orjson.dumps(b), compresslevel=5) for b in batches]
    rows = []
    now = datetime.now(UTC)
    for batch in batches:
        parsed = parse_events(uuid.UUID(batch["anonymous_id"]), batch["events"], now, 1 << 20)
        # Fresh uuids: the anchor table is separate, but keep the rows otherwise identical.
        rows += [r.as_row() for r in parsed.records]
    with server_process(database_url) as url:
        server_seconds = await through_server(url, bodies)
    copy_seconds = await bare_copy(database_url, rows)
    conn = await asyncpg.connect(database_url)
    try:
        stored = await conn.fetchval("SELECT count(*) FROM events")
        rolled = await conn.fetchval("SELECT sum(events) FROM rollup_daily")
    finally:
        await conn.close()
    if stored != total or rolled != total:
        raise RuntimeError(f"server stored {stored} rows and rolled up {rolled}, expected {total}")
    return [
        {"path": "server: HTTP gzip batches of 100, 8 concurrent", "events": total,
         "seconds": server_seconds},
        {"path": "asyncpg copy_records_to_table (anchor)", "events": total,
         "seconds": copy_seconds},
    ]  # fmt: skip


def print_table(results: list[dict[str, Any]]) -> None:
    anchor = results[-1]["events"] / results[-1]["seconds"]
    print(f"{'path':<50} {'events':>8} {'seconds':>8} {'events/s':>10} {'vs COPY':>8}")
    for row in results:
        rate = row["events"] / row["seconds"]
        print(
            f"{row['path']:<50} {row['events']:>8} {row['seconds']:>8.3f} {rate:>10,.0f}"
            f" {rate / anchor:>7.1%}"
        )


def run(quick: bool, database_url: str | None = None) -> list[dict[str, Any]]:
    """Measure and print; `database_url` is an admin DSN (else a temporary PostgreSQL)."""
    total = 2_000 if quick else 100_000
    if database_url:
        results = asyncio.run(measure(database_url, total))
    else:
        with TemporaryPostgres() as pg:
            results = asyncio.run(measure(pg.dsn(), total))
    print_table(results)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="2,000 events instead of 100,000")
    parser.add_argument("--database-url", help="admin DSN of an existing PostgreSQL")
    args = parser.parse_args()
    run(args.quick, args.database_url)


if __name__ == "__main__":
    main()
