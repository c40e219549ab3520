"""Ingest throughput of agent-telemetry-server against bare asyncpg COPY, in one run.

    .venv/bin/python bench/server_ingest.py            # 3 rounds of 60,000 events per path
    .venv/bin/python bench/server_ingest.py --quick    # 1 round of 2,000 events (smoke)
    .venv/bin/python bench/server_ingest.py --database-url postgresql://...   # existing server

The server path: real `agent-telemetry-server serve` subprocesses — one, then two on
the same database, as replicas behind a load balancer would be — receiving gzip batches
of 100 from 8 concurrent clients (spread evenly over the replicas); each batch is
validated, COPYed into staging, deduped into `events` and rolled up (daily, models,
tools, duration histograms), and answered after commit. Each run starts from an empty
database. The anchor: one asyncpg `copy_records_to_table` of the same rows into a table
shaped like `events` (same indexes), no dedupe, no rollups, no HTTP: the ceiling of the
database itself. The three paths take turns, round after round, and each figure is the
median of its rounds: on a shared machine a busy spell then hits them all alike.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gzip
import os
import statistics
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


def _properties(i: int) -> dict[str, Any]:
    """A third each: agent runs, model calls (tokens, reported cost), tool calls (some fail)."""
    kind = i % 3
    if kind == 0:
        return {"duration_ms": i % 997}
    if kind == 1:
        return {
            "duration_ms": 200 + i % 4000,
            "gen_ai.request.model": ("m-large", "m-small")[i % 2],
            "gen_ai.usage.input_tokens": i % 4096,
            "gen_ai.usage.output_tokens": i % 512,
            "cost_usd": round((i % 4096) * 3e-6, 6),
        }
    return {"duration_ms": i % 97, "tool": ("search", "shell", "edit", "read")[i % 4]}


def make_batches(total: int) -> list[dict[str, Any]]:
    now = datetime.now(UTC)
    anonymous_ids = [str(uuid.uuid4()) for _ in range(50)]
    names = ("agent.run.completed", "llm.call", "tool.call")
    batches = []
    for start in range(0, total, BATCH):
        events = [
            {
                "uuid": str(uuid.uuid4()),
                "event": names[i % 3] if i % 17 else "tool.call.failed",
                "timestamp": (now - timedelta(seconds=total - i)).isoformat(),
                "properties": _properties(i),
                "agent": ("planner", "coder", "reviewer")[i % 3],
            }
            for i in range(start, min(start + BATCH, total))
        ]
        batches.append({"anonymous_id": anonymous_ids[len(batches) % 50], "events": events})
    return batches


@contextlib.contextmanager
def server_processes(database_url: str, replicas: int) -> Iterator[list[str]]:
    """`replicas` serve processes on one database, each on its own port."""
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        config = Path(tmp) / "server.toml"
        config.write_text('key_rate = "off"\nanonymous_id_rate = "off"\n')
        env = {
            **os.environ,
            "TELEMETRY_API_KEYS": KEY,
            "AGENT_TELEMETRY_SERVER_CONFIG": str(config),
        }
        urls = []
        for _ in range(replicas):
            port = free_port()
            proc = subprocess.Popen(
                [sys.executable, "-m", "agent_telemetry_server", "serve", "--port", str(port),
                 "--database-url", database_url],
                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
            stack.callback(_stop, proc)
            urls.append(f"http://127.0.0.1:{port}")
        yield urls


def _stop(proc: subprocess.Popen[bytes]) -> None:
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


async def through_servers(urls: list[str], bodies: list[bytes]) -> float:
    headers = {
        "Authorization": f"Bearer {KEY}",
        "Content-Type": "application/json",
        "Content-Encoding": "gzip",
    }
    queue = list(enumerate(bodies))
    connector = aiohttp.TCPConnector(limit=CONCURRENCY)
    async with aiohttp.ClientSession(connector=connector) as session:
        for url in urls:
            await wait_healthy(session, url)

        async def worker(url: str) -> None:
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
        # Clients spread evenly over the replicas, as a round-robin balancer would.
        await asyncio.gather(*(worker(urls[i % len(urls)]) for i in range(CONCURRENCY)))
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


async def fresh_database(admin_dsn: str) -> str:
    name = f"bench_{uuid.uuid4().hex[:8]}"
    await create_database(admin_dsn, name)
    database_url = admin_dsn.rsplit("/", 1)[0] + f"/{name}"
    await apply_migrations(Settings(database_url=database_url))
    return database_url


async def check_stored(database_url: str, total: int) -> dict[str, int]:
    """Every event stored and rolled up once; the bytes the raw events and rollups take."""
    conn = await asyncpg.connect(database_url)
    try:
        stored = await conn.fetchval("SELECT count(*) FROM events")
        rolled = await conn.fetchval("SELECT sum(events) FROM rollup_daily")
        events_bytes = await conn.fetchval("SELECT pg_total_relation_size('events')")
        rollup_bytes = await conn.fetchval(
            "SELECT sum(pg_total_relation_size(c.oid)) FROM pg_class c"
            " WHERE c.relname LIKE 'rollup\\_%' AND c.relkind = 'r'"
        )
    finally:
        await conn.close()
    if stored != total or rolled != total:
        raise RuntimeError(f"server stored {stored} rows and rolled up {rolled}, expected {total}")
    return {"events_bytes": int(events_bytes), "rollup_bytes": int(rollup_bytes)}


REPLICAS = (1, 2)


async def measure(admin_dsn: str, total: int, rounds: int = 1) -> list[dict[str, Any]]:
    """`rounds` of (1 replica, 2 replicas, COPY), interleaved so that a busy spell on a
    shared machine hits every path alike; each figure is the median of its rounds, with
    the seconds of the median round."""
    batches = make_batches(total)
    bodies = [gzip.compress(orjson.dumps(b), compresslevel=5) for b in batches]
    rows = []
    now = datetime.now(UTC)
    for batch in batches:
        parsed = parse_events(uuid.UUID(batch["anonymous_id"]), batch["events"], now, 1 << 20)
        rows += [r.as_row() for r in parsed.records]
    seconds: dict[int, list[float]] = {replicas: [] for replicas in (*REPLICAS, 0)}
    sizes: dict[str, int] = {}
    for _ in range(rounds):
        for replicas in REPLICAS:
            database_url = await fresh_database(admin_dsn)
            with server_processes(database_url, replicas) as urls:
                seconds[replicas].append(await through_servers(urls, bodies))
            sizes = await check_stored(database_url, total)
        seconds[0].append(await bare_copy(await fresh_database(admin_dsn), rows))
    results = []
    for replicas in REPLICAS:
        label = "1 serve process" if replicas == 1 else f"{replicas} serve processes"
        results.append(
            {"path": f"server, {label}: HTTP gzip batches of 100, 8 concurrent",
             "events": total, "seconds": statistics.median(seconds[replicas]),
             "replicas": replicas, "rounds": seconds[replicas], **sizes}
        )  # fmt: skip
    results.append(
        {"path": "asyncpg copy_records_to_table (anchor)", "events": total,
         "seconds": statistics.median(seconds[0]), "rounds": seconds[0]}
    )  # fmt: skip
    return results


def print_table(results: list[dict[str, Any]]) -> None:
    anchor = results[-1]["events"] / results[-1]["seconds"]
    print(f"{'path':<70} {'events':>8} {'seconds':>8} {'events/s':>10} {'vs COPY':>8}")
    for row in results:
        rate = row["events"] / row["seconds"]
        print(
            f"{row['path']:<70} {row['events']:>8} {row['seconds']:>8.3f} {rate:>10,.0f}"
            f" {rate / anchor:>7.1%}"
        )
    if len(results[0].get("rounds", ())) > 1:
        for row in results:
            each = ", ".join(f"{row['events'] / s:,.0f}" for s in row["rounds"])
            print(f"  rounds, events/s: {each}  ({row['path'].split(':')[0]})")
    stored = results[0]
    if "events_bytes" in stored:
        print(
            f"stored: {stored['events_bytes'] / stored['events']:,.0f} bytes per raw event"
            f" (table and indexes), {stored['rollup_bytes'] / 1024 / 1024:.1f} MiB of rollups"
        )


def run(quick: bool, database_url: str | None = None) -> list[dict[str, Any]]:
    """Measure and print; `database_url` is an admin DSN (else a temporary PostgreSQL)."""
    total, rounds = (2_000, 1) if quick else (60_000, 3)
    if database_url:
        results = asyncio.run(measure(database_url, total, rounds))
    else:
        with TemporaryPostgres() as pg:
            results = asyncio.run(measure(pg.dsn(), total, rounds))
    print_table(results)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="one round of 2,000 events")
    parser.add_argument("--database-url", help="admin DSN of an existing PostgreSQL")
    args = parser.parse_args()
    run(args.quick, args.database_url)


if __name__ == "__main__":
    main()
