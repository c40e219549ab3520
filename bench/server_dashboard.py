"""Each team dashboard endpoint of agent-telemetry-server with 10 million events in the rollups.

    .venv/bin/python -m bench.server_dashboard            # ~10,000,000 events, 2,000 installations
    .venv/bin/python -m bench.server_dashboard --quick    # ~100,000 events (smoke)
    .venv/bin/python -m bench.server_dashboard --database-url postgresql://...  # admin DSN

The dashboard reads only the daily rollups, never raw events, so the rollup rows are
generated directly in SQL (no raw events at all): 30 days; 2,000 installations, each
active on about half of the days; on an active day 12 (event, agent) rows out of 40 event
names and 8 agents, one installation-day row, 2 model rows out of 6 models (one never
reports cost), 4 tool rows out of 20 tools; duration histograms for every event name,
model and tool of every day, in all 8 shards.
The events per rollup row vary so that the total is about 10 million.

Each endpoint is asked over HTTP of a real `serve` process for the whole 30-day window
(`?days=30`), with the read key: the median of 5 requests after one warm-up. The anchor,
in the same run: `SELECT count(*), sum(events) FROM rollup_daily`, one pass over the
largest rollup.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

from agent_telemetry_server.app import apply_migrations
from agent_telemetry_server.config import Settings
from agent_telemetry_server.testing import TemporaryPostgres, create_database, free_port

READ_KEY = "bench-read-key"
ENDPOINTS = (
    "/api/v1/analytics/overview",
    "/api/v1/analytics/agents",
    "/api/v1/analytics/errors",
    "/api/v1/analytics/durations",
    "/api/v1/analytics/models",
    "/api/v1/analytics/cost",
    "/api/v1/analytics/tools",
    "/api/v1/telemetry/stats",
)
DAYS = 30
RUNS = 5

# Each statement, and the names of the values its $1, $2 stand for.
_SEED: list[tuple[str, tuple[str, ...]]] = [
    (
        """
        CREATE TEMP TABLE active AS
        SELECT i, (current_date - d) AS day,
               ('00000000-0000-4000-8000-' || lpad(to_hex(i), 12, '0'))::uuid AS anonymous_id
        FROM generate_series(1, $1) AS i, generate_series(0, $2 - 1) AS d
        WHERE abs(hashtext(i::text || '/' || d::text)) % 2 = 0
        """,
        ("installs", "days"),
    ),
    (
        """
        INSERT INTO rollup_daily (day, event, agent, anonymous_id, events, errors)
        SELECT day, 'event.' || ((i * 7 + k * 3) % 40), 'agent-' || ((i + k) % 8),
               anonymous_id, n, n / 30
        FROM active, generate_series(0, 11) AS k,
             LATERAL (SELECT 1 + abs(hashtext(i::text || day::text || k::text))
                             % (2 * $1::int - 1) AS n) AS r
        """,
        ("events_per_row",),
    ),
    (
        """
        INSERT INTO rollup_installs_daily (day, anonymous_id, events, errors)
        SELECT day, anonymous_id, sum(events), sum(errors) FROM rollup_daily GROUP BY 1, 2
        """,
        (),
    ),
    (
        """
        INSERT INTO rollup_models_daily (day, model, agent, anonymous_id, calls, errors,
            input_tokens, output_tokens, costed_calls, cost_usd)
        SELECT day, 'model-' || ((i + k) % 6), 'agent-' || ((i + k) % 8), anonymous_id,
               c, c / 50, c * 1500, c * 300,
               CASE WHEN (i + k) % 6 = 5 THEN 0 ELSE c END,
               CASE WHEN (i + k) % 6 = 5 THEN 0 ELSE c * 0.0042 END
        FROM active, generate_series(0, 1) AS k,
             LATERAL (SELECT 1 + abs(hashtext(day::text || i::text || k::text)) % 40 AS c) AS r
        """,
        (),
    ),
    (
        """
        INSERT INTO rollup_tools_daily (day, tool, agent, anonymous_id, calls, errors)
        SELECT day, 'tool-' || ((i * 3 + k) % 20), 'agent-' || ((i + k) % 8), anonymous_id,
               c, c / 10
        FROM active, generate_series(0, 3) AS k,
             LATERAL (SELECT 1 + abs(hashtext(k::text || day::text || i::text)) % 20 AS c) AS r
        """,
        (),
    ),
    (
        """
        INSERT INTO rollup_durations_daily (day, kind, name, shard, bucket_ms, samples)
        SELECT DISTINCT ON (day, kind, name, shard, b) day, kind, name, shard, b,
               1 + abs(hashtext(day::text || name || b::text || shard::text)) % 50
        FROM (SELECT DISTINCT day FROM active) AS days,
             (SELECT 'event' AS kind, 'event.' || n AS name FROM generate_series(0, 39) AS n
              UNION ALL SELECT 'model', 'model-' || n FROM generate_series(0, 5) AS n
              UNION ALL SELECT 'tool', 'tool-' || n FROM generate_series(0, 19) AS n) AS names,
             generate_series(0, 7) AS shard,
             generate_series(1, $1) AS j,
             LATERAL (SELECT telemetry_duration_bucket(exp(j / 6.0) * 3) AS b) AS bucket
        """,
        ("buckets",),
    ),
    ("ANALYZE", ()),
]


async def seed(database_url: str, values: dict[str, int]) -> dict[str, Any]:
    conn = await asyncpg.connect(database_url)
    try:
        started = time.perf_counter()
        for sql, names in _SEED:
            await conn.execute(sql, *(values[name] for name in names))
        seconds = time.perf_counter() - started
        sizes = {}
        for table in (
            "rollup_daily",
            "rollup_installs_daily",
            "rollup_models_daily",
            "rollup_tools_daily",
            "rollup_durations_daily",
        ):
            rows = await conn.fetchval(f"SELECT count(*) FROM {table}")
            size = await conn.fetchval("SELECT pg_total_relation_size($1::regclass)", table)
            sizes[table] = (rows, size)
        events = await conn.fetchval("SELECT sum(events) FROM rollup_daily")
        installations = await conn.fetchval("SELECT count(DISTINCT anonymous_id) FROM rollup_daily")
        return {
            "events": int(events),
            "installs": installations,
            "sizes": sizes,
            "seconds": seconds,
        }
    finally:
        await conn.close()


async def anchor_ms(database_url: str) -> float:
    conn = await asyncpg.connect(database_url)
    try:
        times = []
        for _ in range(RUNS + 1):
            started = time.perf_counter()
            await conn.fetchrow("SELECT count(*), sum(events) FROM rollup_daily")
            times.append((time.perf_counter() - started) * 1000)
        return statistics.median(times[1:])
    finally:
        await conn.close()


@contextlib.contextmanager
def serve(database_url: str) -> Iterator[str]:
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "server.toml"
        config.write_text('key_rate = "off"\n')
        env = {
            **os.environ,
            "TELEMETRY_API_KEYS": "bench-ingest-key",
            "TELEMETRY_READ_KEYS": READ_KEY,
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


async def time_endpoints(url: str) -> dict[str, tuple[float, int]]:
    """{path: (median ms, answer bytes)}."""
    headers = {"Authorization": f"Bearer {READ_KEY}"}
    timings: dict[str, tuple[float, int]] = {}
    async with aiohttp.ClientSession() as session:
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(aiohttp.ClientError):
                async with session.get(f"{url}/api/v1/telemetry/health") as resp:
                    if resp.status == 200:
                        break
            if time.monotonic() > deadline:
                raise RuntimeError("server did not become healthy")
            await asyncio.sleep(0.1)
        for path in ENDPOINTS:
            times, size = [], 0
            for _ in range(RUNS + 1):
                started = time.perf_counter()
                async with session.get(f"{url}{path}?days={DAYS}", headers=headers) as resp:
                    body = await resp.read()
                    if resp.status != 200:
                        raise RuntimeError(f"{path}: {resp.status} {body[:200]!r}")
                times.append((time.perf_counter() - started) * 1000)
                size = len(body)
            timings[path] = (statistics.median(times[1:]), size)
    return timings


async def measure(admin_dsn: str, quick: bool) -> dict[str, Any]:
    name = f"bench_dash_{uuid.uuid4().hex[:8]}"
    await create_database(admin_dsn, name)
    database_url = admin_dsn.rsplit("/", 1)[0] + f"/{name}"
    await apply_migrations(Settings(database_url=database_url))
    values = {"installs": 20 if quick else 2_000, "days": DAYS, "events_per_row": 28,
              "buckets": 10 if quick else 60}  # fmt: skip
    seeded = await seed(database_url, values)
    anchor = await anchor_ms(database_url)
    with serve(database_url) as url:
        timings = await time_endpoints(url)
    return {"seeded": seeded, "anchor_ms": anchor, "timings": timings}


def to_rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    seeded, anchor = result["seeded"], result["anchor_ms"]
    note = f"{seeded['events']:,} events, {seeded['installs']:,} installations in the rollups"
    rows = [
        {
            "name": f"GET {path}?days={DAYS}",
            "value": ms,
            "unit": "ms",
            "anchor": "SELECT count(*), sum(events) FROM rollup_daily",
            "anchor_value": anchor,
            "ratio": ms / anchor if anchor else None,
            "note": f"{size:,} bytes; {note}",
        }
        for path, (ms, size) in result["timings"].items()
    ]
    for table, (count, size) in seeded["sizes"].items():
        rows.append({"name": f"{table} rows", "value": count, "unit": "rows",
                     "note": f"{size / 1024 / 1024:.1f} MiB with indexes"})  # fmt: skip
    rows.append({"name": "anchor: SELECT count(*), sum(events) FROM rollup_daily",
                 "value": anchor, "unit": "ms"})  # fmt: skip
    return rows


def print_table(result: dict[str, Any]) -> None:
    seeded = result["seeded"]
    print(
        f"rollups: {seeded['events']:,} events from {seeded['installs']:,} installations"
        f" over {DAYS} days (seeded in {seeded['seconds']:.1f} s)"
    )
    for table, (count, size) in seeded["sizes"].items():
        print(f"  {table:<24} {count:>10,} rows {size / 1024 / 1024:>8.1f} MiB")
    anchor = result["anchor_ms"]
    print(f"{'endpoint':<44} {'median ms':>10} {'vs anchor':>10} {'bytes':>10}")
    for path, (ms, size) in result["timings"].items():
        print(f"{path + f'?days={DAYS}':<44} {ms:>10.1f} {ms / anchor:>9.1f}x {size:>10,}")
    print(f"{'anchor: one pass over rollup_daily':<44} {anchor:>10.1f}")


def run(quick: bool, database_url: str | None = None) -> dict[str, Any]:
    """Measure and print; `database_url` is an admin DSN (else a temporary PostgreSQL)."""
    if database_url:
        result = asyncio.run(measure(database_url, quick))
    else:
        with TemporaryPostgres() as pg:
            result = asyncio.run(measure(pg.dsn(), quick))
    print_table(result)
    return {"rows": to_rows(result), **result}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="~100,000 events instead of ~10M")
    parser.add_argument("--database-url", help="admin DSN of an existing PostgreSQL")
    args = parser.parse_args()
    run(args.quick, args.database_url)


if __name__ == "__main__":
    main()
