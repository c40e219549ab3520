"""The agent analytics' fold: new events into `agent_facts`, and from there into every
rollup (migration 9), a chunk per writer job. See `analytics_facts` for what is read."""

from __future__ import annotations

import sqlite3

from agent_telemetryd.store import dashboard_sql
from agent_telemetryd.store.analytics_facts import (
    FACT_COLUMNS,
    facts_select,
    folded_id,
    series_attributes_sql,
    text_sql,
)
from agent_telemetryd.store.metric_cells import count_cells_sql

# One fold step, one writer job: about 12 µs an event on a loaded 2-core machine, so a
# job stays near a tenth of a second and ingest's group commits wait at most that long.
FOLD_CHUNK = 10_000
_COLUMNS = ", ".join(FACT_COLUMNS)
_SUMS = (
    "count(*), sum(error), sum(coalesce(input, 0)), sum(coalesce(output, 0)),"
    " sum(coalesce(cache_read, 0)), sum(coalesce(cache_write, 0)),"
    " sum(cost IS NOT NULL), coalesce(sum(cost), 0), sum(cost IS NULL),"
    " sum(cost IS NULL AND priced_input IS NULL), sum(coalesce(priced_input, 0)),"
    " sum(coalesce(priced_cache_read, 0)), sum(coalesce(priced_cache_write, 0)),"
    " sum(coalesce(priced_output, 0))"
)
_ADD_PRICED = (
    " reported_calls = reported_calls + excluded.reported_calls,"
    " reported_cost = reported_cost + excluded.reported_cost,"
    " unreported_calls = unreported_calls + excluded.unreported_calls,"
    " no_usage_calls = no_usage_calls + excluded.no_usage_calls,"
    " priced_input = priced_input + excluded.priced_input,"
    " priced_cache_read = priced_cache_read + excluded.priced_cache_read,"
    " priced_cache_write = priced_cache_write + excluded.priced_cache_write,"
    " priced_output = priced_output + excluded.priced_output"
)
_RANGE = "id > :start AND id <= :end"
_ROLLUPS = (
    "INSERT INTO agent_models (hour, agent, event, model, requested, called_hour, provider,"
    " calls, errors,"
    " input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, reported_calls,"
    " reported_cost, unreported_calls, no_usage_calls, priced_input, priced_cache_read,"
    " priced_cache_write, priced_output)"
    " SELECT hour, agent, event, model, requested, called_hour, max(provider),"
    f" {_SUMS} FROM agent_facts WHERE {_RANGE} AND llm = 1"
    " GROUP BY hour, agent, event, model, requested, called_hour"
    " ON CONFLICT (hour, agent, event, model, requested, called_hour) DO UPDATE SET"
    " provider = coalesce(excluded.provider, provider), calls = calls + excluded.calls,"
    " errors = errors + excluded.errors, input_tokens = input_tokens + excluded.input_tokens,"
    " output_tokens = output_tokens + excluded.output_tokens,"
    " cache_read_tokens = cache_read_tokens + excluded.cache_read_tokens,"
    f" cache_write_tokens = cache_write_tokens + excluded.cache_write_tokens, {_ADD_PRICED}",
    "INSERT INTO agent_tools (hour, agent, event, tool, calls, errors)"
    " SELECT hour, agent, event, tool, count(*), sum(error) FROM agent_facts"
    f" WHERE {_RANGE} AND tool IS NOT NULL GROUP BY hour, agent, event, tool"
    " ON CONFLICT (hour, agent, event, tool) DO UPDATE SET"
    " calls = calls + excluded.calls, errors = errors + excluded.errors",
    "INSERT INTO agent_durations (kind, name, bucket, requested, hour, agent, event, n)"
    " SELECT 'model', model, bucket, requested, hour, agent, event, count(*) FROM agent_facts"
    f" WHERE {_RANGE} AND llm = 1 AND bucket IS NOT NULL GROUP BY 2, 3, 4, 5, 6, 7"
    " ON CONFLICT (kind, name, bucket, requested, hour, agent, event)"
    " DO UPDATE SET n = n + excluded.n",
    "INSERT INTO agent_durations (kind, name, bucket, requested, hour, agent, event, n)"
    " SELECT 'tool', tool, bucket, '', hour, agent, event, count(*) FROM agent_facts"
    f" WHERE {_RANGE} AND tool IS NOT NULL AND bucket IS NOT NULL GROUP BY 2, 3, 5, 6, 7"
    " ON CONFLICT (kind, name, bucket, requested, hour, agent, event)"
    " DO UPDATE SET n = n + excluded.n",
    # A run's agent is its root's once the root is seen, else the first one seen.
    "INSERT INTO agent_runs (trace_id, root, agent, rooted, start_ms, end_ms, events, spans,"
    " llm_calls, input_tokens, output_tokens, errors)"
    " SELECT trace_id, max(CASE WHEN root THEN event END),"
    " coalesce(max(CASE WHEN root THEN agent END), min(agent)), max(root), min(start_ms),"
    " max(end_ms), count(*), sum(span), sum(llm), sum(coalesce(input, 0)),"
    " sum(coalesce(output, 0)), sum(error) FROM agent_facts"
    f" WHERE {_RANGE} AND trace_id IS NOT NULL GROUP BY trace_id"
    " ON CONFLICT (trace_id) DO UPDATE SET root = coalesce(root, excluded.root),"
    " agent = CASE WHEN rooted = 0 AND excluded.rooted = 1 THEN excluded.agent ELSE agent END,"
    " rooted = max(rooted, excluded.rooted), start_ms = min(start_ms, excluded.start_ms),"
    " end_ms = max(end_ms, excluded.end_ms), events = events + excluded.events,"
    " spans = spans + excluded.spans, llm_calls = llm_calls + excluded.llm_calls,"
    " input_tokens = input_tokens + excluded.input_tokens,"
    " output_tokens = output_tokens + excluded.output_tokens,"
    " errors = errors + excluded.errors",
    "INSERT INTO agent_run_models (trace_id, model, requested, called_hour, calls,"
    " reported_calls,"
    " reported_cost, unreported_calls, no_usage_calls, priced_input, priced_cache_read,"
    " priced_cache_write, priced_output)"
    " SELECT trace_id, model, requested, min(called_hour), count(*), sum(cost IS NOT NULL),"
    " coalesce(sum(cost), 0), sum(cost IS NULL), sum(cost IS NULL AND priced_input IS NULL),"
    " sum(coalesce(priced_input, 0)), sum(coalesce(priced_cache_read, 0)),"
    " sum(coalesce(priced_cache_write, 0)), sum(coalesce(priced_output, 0)) FROM agent_facts"
    f" WHERE {_RANGE} AND llm = 1 AND trace_id IS NOT NULL GROUP BY trace_id, model, requested"
    " ON CONFLICT (trace_id, model, requested) DO UPDATE"
    " SET called_hour = min(called_hour, excluded.called_hour),"
    f" calls = calls + excluded.calls, {_ADD_PRICED}",
    # Per series and hour: the sums, the first and last point, and the growth of a running
    # total inside the hour (metric_cells.py), counted again for each hour this chunk has
    # points in.
    count_cells_sql("t.id > :start AND t.id <= :end"),
)


def fold(conn: sqlite3.Connection, limit: int = FOLD_CHUNK) -> int:
    """Fold up to `limit` more events; returns how many. Run inside a write transaction
    (the writer's `run`), so facts, rollups and watermark move together."""
    start = folded_id(conn)
    row = conn.execute(
        "SELECT id FROM events WHERE id > ? ORDER BY id LIMIT 1 OFFSET ?", (start, limit - 1)
    ).fetchone()
    end = row[0] if row else conn.execute("SELECT max(id) FROM events").fetchone()[0]
    if end is None or end <= start:
        return 0
    bounds = {"start": start, "end": end}
    p = "e.properties"
    conn.execute(
        "INSERT OR IGNORE INTO agent_metric_series (name, agent, attributes, unit, type,"
        f" temporality) SELECT e.event, e.agent, {series_attributes_sql(p)},"
        f" max({text_sql(p, 'metric.unit')}), max({text_sql(p, 'metric.type')}),"
        f" max({text_sql(p, 'metric.temporality')}) FROM events AS e"
        " WHERE e.id > :start AND e.id <= :end"
        f" AND instr({p}, '\"metric.type\"') > 0 AND {text_sql(p, 'metric.type')} IS NOT NULL"
        " GROUP BY 1, 2, 3",
        bounds,
    )
    conn.execute(
        f"INSERT INTO agent_facts ({_COLUMNS}) SELECT {_COLUMNS} FROM"
        f" ({facts_select('e.id > :start AND e.id <= :end')})",
        bounds,
    )
    for statement in _ROLLUPS:
        conn.execute(statement, bounds)
    folded = conn.execute(
        "SELECT count(*) FROM events WHERE id > ? AND id <= ?", (start, end)
    ).fetchone()[0]
    conn.execute("UPDATE agent_state SET folded_id = ?", (end,))
    return int(folded)


def fold_all(conn: sqlite3.Connection) -> int:
    """Fold everything, a chunk per transaction (benchmarks, tests, offline use)."""
    return dashboard_sql.fold_all(conn, fold)
