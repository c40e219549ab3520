"""What an event is to the agent analytics, as SQL, and the fold that keeps their rollups.

Properties are read under the GenAI convention names the ingest vocabulary stores
(`analytics/vocabulary.py`):

- an **LLM call** has a model (`gen_ai.response.model`, the one that answered, else
  `gen_ai.request.model`, the one asked for, which behind a gateway may be a deployment
  name; `requested` keeps the one asked for when it differs, to be priced and found by) or a
  token count (`gen_ai.usage.input_tokens` / `output_tokens`), unless it is an agent's
  own span (`gen_ai.operation.name` in AGENT_OPERATIONS): the conventions have it name
  the model its calls use and sum their tokens, and the calls come as spans of their own;
- a **tool call** has `gen_ai.tool.name`, or is a span whose `gen_ai.operation.name` is
  `execute_tool` (named by the tool in its span name, `execute_tool <tool>`);
- a metric point (`metric.type`, from OTLP metrics) is neither: its attributes may name a
  model, but it reports on calls, it is not one;
- a **span** is an event with a `span_id` and a duration; a **root** is a span without a
  parent. Other events of a trace (an OTLP log record inside a span, a shim event tracked
  inside one) belong to its run but are not spans;
- an **error** is the dashboard's rule (`store.dashboard_sql.error_sql`), which counts
  `status: "error"`; a duration is the dashboard's too (`duration_ms` >= 0), in its
  3-significant-digit histogram buckets;
- a **reported cost** is a numeric `cost_usd` >= 0. A call without one is priced from its
  tokens when read (`priced_*`: input less cached input, cache reads, cache writes,
  output); a call with neither has no usage and its cost stays unknown.

`analytics_fold.fold()` runs on the writer thread in chunks, never on the ingest path: it
reads each new event once into `agent_facts` through `facts_select` (only the events
above: a cheap text test skips the rest without parsing their JSON), then updates every
rollup from those rows. The views add the events not yet folded (id >
`agent_state.folded_id`) through the same `facts_select`, so answers are exact whether or
not the fold has caught up.
"""

from __future__ import annotations

import sqlite3

from agent_telemetryd.store.analytics_model_names import ASKED_MODEL_TABLES
from agent_telemetryd.store.dashboard_sql import HOUR_MS, error_sql
from agent_telemetryd.store.metric_cells import GROWTH_COLUMNS
from agent_telemetryd.store.migrations import MIGRATIONS, _statements

ANALYTICS_MIGRATION = 9  # the migration that made agent_state and the rollups

# What a point's series is: its properties without what the point itself says.
METRIC_KEYS = (
    "metric.type",
    "metric.unit",
    "metric.temporality",
    "metric.monotonic",
    "metric.start_time",
    "metric.no_recorded_value",
    "metric.value",
    "metric.count",
    "metric.sum",
    "metric.min",
    "metric.max",
    "metric.bucket_counts",
    "metric.explicit_bounds",
    "metric.scale",
    "metric.zero_count",
    "metric.zero_threshold",
    "metric.positive.offset",
    "metric.positive.bucket_counts",
    "metric.negative.offset",
    "metric.negative.bucket_counts",
    "metric.quantiles",
)
# Operations that are an agent's, not a model's: their spans may carry a model and token
# counts, the sums of the LLM calls inside them, which are counted themselves.
AGENT_OPERATIONS = ("invoke_agent", "create_agent", "invoke_workflow")
# The facts stored per event, in agent_facts' column order.
FACT_COLUMNS = (
    "id",
    "hour",
    "called_hour",
    "agent",
    "event",
    "llm",
    "model",
    "requested",
    "provider",
    "tool",
    "error",
    "bucket",
    "input",
    "output",
    "cache_read",
    "cache_write",
    "cost",
    "priced_input",
    "priced_cache_read",
    "priced_cache_write",
    "priced_output",
    "trace_id",
    "span",
    "root",
    "start_ms",
    "end_ms",
    "series",
    "value",
    "count",
)


def json_path(name: str) -> str:
    """The JSON path of a top-level property whose name has dots in it."""
    return f"'$.\"{name}\"'"


def text_sql(p: str, name: str) -> str:
    """The property `name` of the JSON `p` when it is text, else NULL."""
    path = json_path(name)
    return f"(CASE WHEN json_type({p}, {path}) = 'text' THEN json_extract({p}, {path}) END)"


def tool_sql(tool: str, operation: str, event: str) -> str:
    """The tool an event calls, from its `gen_ai.tool.name` (`tool`, as read), its
    `gen_ai.operation.name` (`operation`) and its name (`event`); NULL when none. A metric
    point calls none whatever this says (the caller tests that)."""
    return (
        f"CASE WHEN typeof({tool}) = 'text' THEN {tool}"
        f" WHEN {operation} = 'execute_tool' THEN CASE WHEN substr({event}, 1, 13) ="
        f" 'execute_tool ' AND length({event}) > 13 THEN substr({event}, 14) ELSE {event} END END"
    )


def event_tool_sql(alias: str) -> str:
    """`tool_sql` read from the event `alias` itself: the tool filter of the views that
    list events selects by the same rule the Tools view counts by."""
    p = f"{alias}.properties"
    tool = tool_sql(
        f"json_extract({p}, {json_path('gen_ai.tool.name')})",
        f"json_extract({p}, {json_path('gen_ai.operation.name')})",
        f"{alias}.event",
    )
    metric = f"json_type({p}, {json_path('metric.type')}) = 'text'"
    return f"(CASE WHEN {metric} THEN NULL ELSE {tool} END)"


def series_attributes_sql(p: str) -> str:
    """A metric point's series: its properties as JSON text without the `metric.*` keys."""
    return f"json_remove({p}, {', '.join(json_path(key) for key in METRIC_KEYS)})"


def might_matter_sql(alias: str) -> str:
    """A cheap test that skips most plain events without parsing their JSON: everything
    the analytics read is under a `gen_ai.*` name, a metric point's `metric.type`, or in a
    trace. (A false positive only costs the parse.)"""
    return (
        f"({alias}.trace_id IS NOT NULL OR instr({alias}.properties, '\"gen_ai.') > 0"
        f" OR instr({alias}.properties, '\"metric.type\"') > 0)"
    )


def facts_select(where: str, *, series: str = "lookup") -> str:
    """SELECT the facts of the events `e` matching `where` (a prefix filter is added), one
    row per event that matters, with agent_facts' columns plus `received_ms`.
    `series="lookup"` finds each metric point's series id (the fold, after registering
    them); `series="attributes"` gives the attributes text instead (the live tail)."""
    p = "e.properties"
    values = ", ".join(f"json_extract({p}, {json_path(name)}) AS {alias}" for alias, name in _READ)
    if series == "lookup":
        series_sql = (
            "(SELECT s.id FROM agent_metric_series AS s WHERE s.name = e.event"
            f" AND s.agent = e.agent AND s.attributes = {series_attributes_sql(p)})"
        )
    else:
        series_sql = series_attributes_sql(p)
    # Each property read once per event; the CASEs below test the values' SQL types.
    raw = (
        "SELECT e.id, e.received_ms, e.agent, e.event, e.ts_ms, e.trace_id, e.span_id,"
        f" e.parent_span_id, {error_sql('e')} AS error, {values},"
        f" CASE WHEN json_type({p}, {json_path('metric.type')}) = 'text' THEN {series_sql} END"
        " AS series"
        f" FROM events AS e WHERE ({where}) AND {might_matter_sql('e')}"
    )
    metric = "typeof(r.metric_type) = 'text'"
    # A blank name is none, as on the reference server.
    named = "CASE WHEN typeof({0}) = 'text' AND trim({0}) != '' THEN {0} END"
    tool = tool_sql("r.tool", "r.operation", "r.event")
    operations = ", ".join(f"'{name}'" for name in AGENT_OPERATIONS)
    agent_operation = f"(typeof(r.operation) = 'text' AND r.operation IN ({operations}))"
    histogram = "r.metric_type IN ('histogram', 'exponential_histogram', 'summary')"
    number = "CASE WHEN typeof({0}) IN ('integer', 'real') THEN {0} END"
    # The values with their types checked, once each.
    typed = (
        "SELECT r.id, r.received_ms, r.agent, r.event, r.ts_ms, r.trace_id, r.span_id,"
        f" r.parent_span_id, r.error, r.series, {metric} AS metric,"
        f" {named.format('r.response_model')} AS answered,"
        f" {named.format('r.request_model')} AS asked,"
        " CASE WHEN typeof(r.provider) = 'text' THEN r.provider END AS provider,"
        f" {tool} AS tool, {agent_operation} AS agent_operation,"
        f" {_amount('r.input')} AS input, {_amount('r.output')} AS output,"
        f" {_amount('r.cache_read')} AS cache_read, {_amount('r.cache_write')} AS cache_write,"
        f" {_amount('r.cost')} AS cost, {_amount('r.duration')} AS duration,"
        f" CASE WHEN {histogram} THEN {number.format('r.metric_sum')}"
        f" ELSE {number.format('r.metric_value')} END AS value,"
        f" CASE WHEN {histogram} THEN {number.format('r.metric_count')} END AS count"
        " FROM r"
    )
    llm = (
        "(NOT t.metric AND NOT t.agent_operation"
        " AND (t.answered IS NOT NULL OR t.asked IS NOT NULL OR t.input IS NOT NULL"
        " OR t.output IS NOT NULL))"
    )
    flagged = f"SELECT t.*, {llm} AS llm FROM t"
    priced = "(u.llm AND u.cost IS NULL AND (u.input IS NOT NULL OR u.output IS NOT NULL))"
    uncached = (
        "max(coalesce(u.input, 0) - coalesce(u.cache_read, 0) - coalesce(u.cache_write, 0), 0)"
    )
    span = "(u.span_id IS NOT NULL AND u.duration IS NOT NULL)"
    facts = (
        f"SELECT u.id, u.received_ms / {HOUR_MS} AS hour,"
        f" min(u.ts_ms, u.received_ms) / {HOUR_MS} AS called_hour, u.agent, u.event, u.llm,"
        " CASE WHEN u.llm THEN coalesce(u.answered, u.asked, '') ELSE '' END AS model,"
        " CASE WHEN u.llm AND u.asked != u.answered THEN u.asked ELSE '' END AS requested,"
        " u.provider,"
        " CASE WHEN u.metric THEN NULL ELSE u.tool END AS tool, u.error,"
        f" CASE WHEN u.duration IS NOT NULL THEN {duration_bucket_sql('u.duration')} END"
        " AS bucket,"
        " CASE WHEN u.llm THEN u.input END AS input,"
        " CASE WHEN u.llm THEN u.output END AS output,"
        " CASE WHEN u.llm THEN u.cache_read END AS cache_read,"
        " CASE WHEN u.llm THEN u.cache_write END AS cache_write,"
        " CASE WHEN u.llm THEN u.cost END AS cost,"
        f" CASE WHEN {priced} THEN {uncached} END AS priced_input,"
        f" CASE WHEN {priced} THEN coalesce(u.cache_read, 0) END AS priced_cache_read,"
        f" CASE WHEN {priced} THEN coalesce(u.cache_write, 0) END AS priced_cache_write,"
        f" CASE WHEN {priced} THEN coalesce(u.output, 0) END AS priced_output,"
        f" u.trace_id, {span} AS span, ({span} AND u.parent_span_id IS NULL) AS root,"
        " u.ts_ms AS start_ms, u.ts_ms + coalesce(u.duration, 0) AS end_ms, u.series,"
        " u.value, u.count, u.received_ms FROM u"
        " WHERE u.llm OR (NOT u.metric AND u.tool IS NOT NULL) OR u.trace_id IS NOT NULL"
        " OR u.metric"
    )
    # MATERIALIZED: each layer is computed once per event into a scratch table; flattened
    # into the next, its expressions (the JSON reads first) would be repeated wherever
    # one of its columns is used.
    return (
        f"WITH r AS MATERIALIZED ({raw}), t AS MATERIALIZED ({typed}),"
        f" u AS MATERIALIZED ({flagged}) {facts}"
    )


# (column, property) read from each event that might matter.
_READ = (
    ("request_model", "gen_ai.request.model"),
    ("response_model", "gen_ai.response.model"),
    ("provider", "gen_ai.provider.name"),
    ("tool", "gen_ai.tool.name"),
    ("operation", "gen_ai.operation.name"),
    ("input", "gen_ai.usage.input_tokens"),
    ("output", "gen_ai.usage.output_tokens"),
    ("cache_read", "gen_ai.usage.cache_read.input_tokens"),
    ("cache_write", "gen_ai.usage.cache_creation.input_tokens"),
    ("cost", "cost_usd"),
    ("duration", "duration_ms"),
    ("metric_type", "metric.type"),
    ("metric_value", "metric.value"),
    ("metric_sum", "metric.sum"),
    ("metric_count", "metric.count"),
)


def _amount(value: str) -> str:
    """`value` when it is a number >= 0, else NULL."""
    return f"(CASE WHEN typeof({value}) IN ('integer', 'real') AND {value} >= 0 THEN {value} END)"


def duration_bucket_sql(d: str) -> str:
    """The dashboard's histogram bucket of a duration value (`dashboard_sql.bucket_sql`
    reads it from the properties; this takes it already read). A test holds them equal."""
    return (
        f"(CASE WHEN {d} < 1000 THEN round({d})"
        f" WHEN {d} < 10000 THEN round({d} / 10) * 10"
        f" WHEN {d} < 100000 THEN round({d} / 100) * 100"
        f" WHEN {d} < 1000000 THEN round({d} / 1000) * 1000"
        f" WHEN {d} < 10000000 THEN round({d} / 10000) * 10000"
        f" ELSE round({d} / 100000) * 100000 END)"
    )


def folded_id(conn: sqlite3.Connection) -> int:
    row = conn.execute("SELECT folded_id FROM agent_state").fetchone()
    return int(row[0]) if row else 0


def unfolded(conn: sqlite3.Connection) -> int:
    """How many events the fold has not reached yet (a rowid range count: cheap)."""
    row = conn.execute(
        "SELECT count(*) FROM events WHERE id > (SELECT folded_id FROM agent_state)"
    ).fetchone()
    return int(row[0])


def stand_ins_for_rollups(conn: sqlite3.Connection) -> None:
    """A buffer from before migration 9, 13 or 17, opened read-only (the daemon has not
    been restarted since the upgrade): empty TEMP tables of the current shape, with nothing
    folded, so every query reads the events themselves. From before migration 7 (no trace
    columns yet), a TEMP view of the events with those columns empty stands in too."""
    models = {row[1] for row in conn.execute("PRAGMA main.table_info(agent_models)")}
    hours = {row[1] for row in conn.execute("PRAGMA main.table_info(agent_metric_hours)")}
    if "called_hour" in models and "grown" in hours:
        return
    columns = {row[1] for row in conn.execute("PRAGMA main.table_info(events)")}
    if "trace_id" not in columns:
        conn.execute(
            "CREATE TEMP VIEW events AS SELECT *, NULL AS trace_id, NULL AS span_id,"
            " NULL AS parent_span_id FROM main.events"
        )
    script = MIGRATIONS[ANALYTICS_MIGRATION - 1]
    assert isinstance(script, str)  # a plain SQL migration, read for its CREATE TABLEs
    # The tables migration 17 made again, in their new shape.
    remade = {statement.split()[2]: statement for statement in _statements(ASKED_MODEL_TABLES)}
    for statement in _statements(script):
        if statement.startswith("CREATE TABLE"):
            statement = remade.get(statement.split()[2], statement)
            conn.execute(statement.replace("CREATE TABLE", "CREATE TEMP TABLE", 1))
    for column, kind in GROWTH_COLUMNS:
        conn.execute(f"ALTER TABLE temp.agent_metric_hours ADD COLUMN {column} {kind}")
    conn.execute("INSERT INTO temp.agent_state (one, folded_id) VALUES (1, 0)")
