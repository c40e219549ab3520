"""Runs (one per trace) and a run's spans, over `agent_runs` plus the unfolded tail.

A page of runs, newest first, is read without summing every run of the range: the folded
runs are read in start order from their index (as many as the page needs, plus one per
trace the tail touches, since merging only moves a run later in the list), the traces
of the unfolded tail are summed live, and the two are merged by trace id.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, replace
from typing import Any

from agent_telemetryd.store.analytics_sql import MODEL_MATCH, TAIL, AnalyticsFilter
from agent_telemetryd.store.dashboard_sql import HOUR_MS, error_sql

MAX_SPANS = 5_000  # a run's waterfall lists at most this many of its events


@dataclass(frozen=True)
class Run:
    trace_id: str
    root: str | None
    agent: str
    rooted: bool
    start_ms: float
    end_ms: float
    events: int
    spans: int
    llm_calls: int
    input_tokens: float
    output_tokens: float
    errors: int
    has_model: bool  # a call to the model filtered on (True without that filter)

    def merged(self, other: Run) -> Run:
        """This run's folded part with `other`, its part not folded yet."""
        agent = self.agent if self.rooted or not other.rooted else other.agent
        return replace(
            self,
            root=self.root if self.root is not None else other.root,
            agent=agent,
            rooted=self.rooted or other.rooted,
            start_ms=min(self.start_ms, other.start_ms),
            end_ms=max(self.end_ms, other.end_ms),
            events=self.events + other.events,
            spans=self.spans + other.spans,
            llm_calls=self.llm_calls + other.llm_calls,
            input_tokens=self.input_tokens + other.input_tokens,
            output_tokens=self.output_tokens + other.output_tokens,
            errors=self.errors + other.errors,
            has_model=self.has_model or other.has_model,
        )


_RUN_COLUMNS = (
    "trace_id, root, agent, rooted, start_ms, end_ms, events, spans, llm_calls,"
    " input_tokens, output_tokens, errors"
)


def runs_page(
    conn: sqlite3.Connection,
    f: AnalyticsFilter,
    limit: int,
    before: tuple[float, str] | None,
) -> list[Run]:
    """Up to `limit` + 1 runs under the filters, newest start first (the extra one says
    whether there is a next page), starting after the cursor `before` (start, trace)."""
    model_flag, params = _model_flag(f, "r.trace_id")
    tail = _tail_runs(conn, f)
    touched = _folded(
        conn,
        f"SELECT {_RUN_COLUMNS}, {model_flag} FROM agent_runs AS r"
        " WHERE r.trace_id IN (SELECT value FROM json_each(:ids))",
        {**params, "ids": json.dumps(list(tail))},
    )
    terms, more = _run_terms(f, before)
    params.update(more)
    top = _folded(
        conn,
        f"SELECT {_RUN_COLUMNS}, {model_flag} FROM agent_runs AS r WHERE {terms}"
        " ORDER BY r.start_ms DESC, r.trace_id DESC LIMIT :n",
        {**params, "n": limit + 1 + len(tail)},
    )
    merged = {run.trace_id: run for run in top}
    merged.update({run.trace_id: run for run in touched})
    for trace_id, part in tail.items():
        folded = merged.get(trace_id)
        merged[trace_id] = part if folded is None else folded.merged(part)
    kept = [run for run in merged.values() if _keeps(f, before, run)]
    kept.sort(key=lambda run: (run.start_ms, run.trace_id), reverse=True)
    return kept[: limit + 1]


def _model_flag(f: AnalyticsFilter, trace: str) -> tuple[str, dict[str, Any]]:
    if f.model is None:
        return "1", {}
    return (
        "EXISTS (SELECT 1 FROM agent_run_models AS m"
        f" WHERE m.trace_id = {trace} AND (m.model = :model OR m.requested = :model))",
        {"model": f.model},
    )


def _run_terms(f: AnalyticsFilter, before: tuple[float, str] | None) -> tuple[str, Any]:
    """Filters on folded runs. The root name is `event`; a run is in the range when it
    started in it."""
    terms: list[str] = []
    params: dict[str, Any] = {}
    if f.first_hour is not None:
        terms.append("r.start_ms >= :first_ms")
        params["first_ms"] = f.first_hour * HOUR_MS
    if f.end_hour is not None:
        terms.append("r.start_ms < :end_ms")
        params["end_ms"] = f.end_hour * HOUR_MS
    if f.agent is not None:
        terms.append("r.agent = :agent")
        params["agent"] = f.agent
    if f.event is not None:
        terms.append("r.root = :event")
        params["event"] = f.event
    if f.model is not None:
        terms.append(_model_flag(f, "r.trace_id")[0])
    if before is not None:
        terms.append(
            "(r.start_ms < :before_ms OR (r.start_ms = :before_ms AND r.trace_id < :before_id))"
        )
        params["before_ms"], params["before_id"] = before
    return " AND ".join(terms) or "1", params


def _keeps(f: AnalyticsFilter, before: tuple[float, str] | None, run: Run) -> bool:
    if f.first_hour is not None and run.start_ms < f.first_hour * HOUR_MS:
        return False
    if f.end_hour is not None and run.start_ms >= f.end_hour * HOUR_MS:
        return False
    if f.agent is not None and run.agent != f.agent:
        return False
    if f.event is not None and run.root != f.event:
        return False
    if not run.has_model:
        return False
    return before is None or (run.start_ms, run.trace_id) < before


def _folded(conn: sqlite3.Connection, sql: str, params: dict[str, Any]) -> list[Run]:
    return [_run(row) for row in conn.execute(sql, params)]


def _run(row: tuple[Any, ...]) -> Run:
    (trace_id, root, agent, rooted, start, end, events, spans, llm, tin, tout, errors, flag) = row
    return Run(
        trace_id, root, agent, bool(rooted), start, end, events, spans, llm, tin, tout, errors,
        bool(flag),
    )  # fmt: skip


def _tail_runs(conn: sqlite3.Connection, f: AnalyticsFilter) -> dict[str, Run]:
    """The unfolded tail's part of each trace it touches."""
    params: dict[str, Any] = {}
    flag = "1"
    if f.model is not None:
        flag = f"max(llm AND {MODEL_MATCH})"
        params["model"] = f.model
    rows = conn.execute(
        "SELECT trace_id, max(CASE WHEN root THEN event END),"
        " coalesce(max(CASE WHEN root THEN agent END), min(agent)), max(root), min(start_ms),"
        " max(end_ms), count(*), sum(span), sum(llm), sum(coalesce(input, 0)),"
        f" sum(coalesce(output, 0)), sum(error), {flag}"
        f" FROM {TAIL} WHERE trace_id IS NOT NULL GROUP BY trace_id",
        params,
    ).fetchall()
    return {row[0]: _run(row) for row in rows}


def run_events(conn: sqlite3.Connection, trace_id: str) -> list[tuple[Any, ...]]:
    """(id, event, agent, ts_ms, properties, span_id, parent_span_id, error) of every event
    of the trace (at most MAX_SPANS + 1), in start order."""
    return conn.execute(
        "SELECT e.id, e.event, e.agent, e.ts_ms, e.properties, e.span_id, e.parent_span_id,"
        f" {error_sql('e')} FROM events AS e WHERE e.trace_id = ? ORDER BY e.ts_ms, e.id"
        " LIMIT ?",
        (trace_id, MAX_SPANS + 1),
    ).fetchall()
