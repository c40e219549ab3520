"""The agent analytics' tables, indexes and triggers: migration 9 (store/migrations.py),
kept in a module of its own since it is over half of all the migrations' text, and the
later migrations of these tables (15; 17 is in `analytics_model_names`).

Like every migration, it is never edited once released; a change is a new migration."""

AGENT_ANALYTICS_SCHEMA = """
    -- Folded by id off the ingest path, like the dashboard's rollups, with a watermark of
    -- their own: a buffer from before this migration is folded from its first event.
    CREATE TABLE agent_state (one INTEGER PRIMARY KEY CHECK (one = 1), folded_id INTEGER NOT NULL);
    INSERT INTO agent_state (one, folded_id) VALUES (1, 0);
    -- One row per folded event that is an LLM call, a tool call, part of a trace or a
    -- metric point (other events have none): what the fold read from its properties. A
    -- deleted event takes exactly this back out of the rollups (the triggers below),
    -- without its JSON being read again or the rules being repeated here.
    CREATE TABLE agent_facts (
        id INTEGER PRIMARY KEY,
        hour INTEGER NOT NULL,
        agent TEXT NOT NULL,
        event TEXT NOT NULL,
        llm INTEGER NOT NULL,
        model TEXT NOT NULL,
        provider TEXT,
        tool TEXT,
        error INTEGER NOT NULL,
        bucket REAL,
        input, output, cache_read, cache_write,
        cost REAL,
        priced_input, priced_cache_read, priced_cache_write, priced_output,
        trace_id TEXT,
        span INTEGER NOT NULL,
        root INTEGER NOT NULL,
        start_ms REAL,
        end_ms REAL,
        series INTEGER,
        value REAL,
        count REAL
    );
    -- LLM calls per UTC hour, agent, event name and model. A reported cost is summed; the
    -- tokens of calls without one are summed apart, to be priced when read (so a price
    -- change applies to past events too); no_usage_calls reported neither.
    CREATE TABLE agent_models (
        hour INTEGER NOT NULL,
        agent TEXT NOT NULL,
        event TEXT NOT NULL,
        model TEXT NOT NULL,
        provider TEXT,
        calls INTEGER NOT NULL,
        errors INTEGER NOT NULL,
        input_tokens NOT NULL,
        output_tokens NOT NULL,
        cache_read_tokens NOT NULL,
        cache_write_tokens NOT NULL,
        reported_calls INTEGER NOT NULL,
        reported_cost REAL NOT NULL,
        unreported_calls INTEGER NOT NULL,
        no_usage_calls INTEGER NOT NULL,
        priced_input NOT NULL,
        priced_cache_read NOT NULL,
        priced_cache_write NOT NULL,
        priced_output NOT NULL,
        PRIMARY KEY (hour, agent, event, model)
    ) WITHOUT ROWID;
    CREATE TABLE agent_tools (
        hour INTEGER NOT NULL,
        agent TEXT NOT NULL,
        event TEXT NOT NULL,
        tool TEXT NOT NULL,
        calls INTEGER NOT NULL,
        errors INTEGER NOT NULL,
        PRIMARY KEY (hour, agent, event, tool)
    ) WITHOUT ROWID;
    -- Durations of LLM calls (kind 'model') and tool calls (kind 'tool') by name, in the
    -- dashboard's 3-significant-digit buckets. Keyed name and bucket first, so the
    -- per-name percentiles read cells in order instead of sorting them.
    CREATE TABLE agent_durations (
        kind TEXT NOT NULL,
        name TEXT NOT NULL,
        bucket REAL NOT NULL,
        hour INTEGER NOT NULL,
        agent TEXT NOT NULL,
        event TEXT NOT NULL,
        n INTEGER NOT NULL,
        PRIMARY KEY (kind, name, bucket, hour, agent, event)
    ) WITHOUT ROWID;
    -- One row per trace. Spans arrive in any order: the root (a span without a parent)
    -- names the run and its agent when it comes; until then the first agent seen does.
    CREATE TABLE agent_runs (
        trace_id TEXT PRIMARY KEY,
        root TEXT,
        agent TEXT NOT NULL,
        rooted INTEGER NOT NULL,
        start_ms REAL NOT NULL,
        end_ms REAL NOT NULL,
        events INTEGER NOT NULL,
        spans INTEGER NOT NULL,
        llm_calls INTEGER NOT NULL,
        input_tokens NOT NULL,
        output_tokens NOT NULL,
        errors INTEGER NOT NULL
    ) WITHOUT ROWID;
    -- The runs list pages newest first.
    CREATE INDEX agent_runs_by_start ON agent_runs (start_ms, trace_id);
    -- A run's LLM calls per model, priced when read at the prices of its first call's hour.
    CREATE TABLE agent_run_models (
        trace_id TEXT NOT NULL,
        model TEXT NOT NULL,
        hour INTEGER NOT NULL,
        calls INTEGER NOT NULL,
        reported_calls INTEGER NOT NULL,
        reported_cost REAL NOT NULL,
        unreported_calls INTEGER NOT NULL,
        no_usage_calls INTEGER NOT NULL,
        priced_input NOT NULL,
        priced_cache_read NOT NULL,
        priced_cache_write NOT NULL,
        priced_output NOT NULL,
        PRIMARY KEY (trace_id, model)
    ) WITHOUT ROWID;
    -- OTLP metric series: a metric's points from one agent with one set of attributes.
    CREATE TABLE agent_metric_series (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL,
        agent TEXT NOT NULL,
        attributes TEXT NOT NULL,
        unit TEXT,
        type TEXT,
        temporality TEXT,
        UNIQUE (name, agent, attributes)
    );
    -- Per series and hour: the points' sum (value, or a histogram's sum) and count, and
    -- the last point, from which cumulative series become per-bucket amounts when read.
    CREATE TABLE agent_metric_hours (
        series INTEGER NOT NULL,
        hour INTEGER NOT NULL,
        points INTEGER NOT NULL,
        total REAL NOT NULL,
        total_count REAL NOT NULL,
        last_ms INTEGER NOT NULL,
        last_value REAL,
        last_count REAL,
        last_start TEXT,
        PRIMARY KEY (series, hour)
    ) WITHOUT ROWID;
    CREATE TRIGGER agent_events_deleted AFTER DELETE ON events
    BEGIN
        DELETE FROM agent_facts WHERE id = old.id;
        -- SQLite reuses ids above the largest left: lower the watermark, as the
        -- dashboard's trigger does, so new events at those ids are folded.
        UPDATE agent_state SET folded_id = (SELECT coalesce(max(id), 0) FROM events)
        WHERE folded_id > (SELECT coalesce(max(id), 0) FROM events);
    END;
    CREATE TRIGGER agent_facts_deleted AFTER DELETE ON agent_facts
    BEGIN
        UPDATE agent_models SET calls = calls - 1, errors = errors - old.error,
            input_tokens = input_tokens - coalesce(old.input, 0),
            output_tokens = output_tokens - coalesce(old.output, 0),
            cache_read_tokens = cache_read_tokens - coalesce(old.cache_read, 0),
            cache_write_tokens = cache_write_tokens - coalesce(old.cache_write, 0),
            reported_calls = reported_calls - (old.cost IS NOT NULL),
            reported_cost = reported_cost - coalesce(old.cost, 0),
            unreported_calls = unreported_calls - (old.cost IS NULL),
            no_usage_calls = no_usage_calls - (old.cost IS NULL AND old.priced_input IS NULL),
            priced_input = priced_input - coalesce(old.priced_input, 0),
            priced_cache_read = priced_cache_read - coalesce(old.priced_cache_read, 0),
            priced_cache_write = priced_cache_write - coalesce(old.priced_cache_write, 0),
            priced_output = priced_output - coalesce(old.priced_output, 0)
        WHERE old.llm = 1 AND hour = old.hour AND agent = old.agent AND event = old.event
            AND model = old.model;
        DELETE FROM agent_models
        WHERE old.llm = 1 AND hour = old.hour AND agent = old.agent AND event = old.event
            AND model = old.model AND calls <= 0;
        UPDATE agent_tools SET calls = calls - 1, errors = errors - old.error
        WHERE old.tool IS NOT NULL AND hour = old.hour AND agent = old.agent
            AND event = old.event AND tool = old.tool;
        DELETE FROM agent_tools
        WHERE old.tool IS NOT NULL AND hour = old.hour AND agent = old.agent
            AND event = old.event AND tool = old.tool AND calls <= 0;
        UPDATE agent_durations SET n = n - 1
        WHERE old.llm = 1 AND old.bucket IS NOT NULL AND kind = 'model' AND name = old.model
            AND bucket = old.bucket AND hour = old.hour AND agent = old.agent
            AND event = old.event;
        UPDATE agent_durations SET n = n - 1
        WHERE old.tool IS NOT NULL AND old.bucket IS NOT NULL AND kind = 'tool'
            AND name = old.tool AND bucket = old.bucket AND hour = old.hour
            AND agent = old.agent AND event = old.event;
        DELETE FROM agent_durations
        WHERE old.bucket IS NOT NULL AND kind IN ('model', 'tool')
            AND name IN (old.model, old.tool) AND bucket = old.bucket AND hour = old.hour
            AND agent = old.agent AND event = old.event AND n <= 0;
        UPDATE agent_runs SET events = events - 1, spans = spans - old.span,
            llm_calls = llm_calls - old.llm,
            input_tokens = input_tokens - coalesce(old.input, 0),
            output_tokens = output_tokens - coalesce(old.output, 0),
            errors = errors - old.error
        WHERE old.trace_id IS NOT NULL AND trace_id = old.trace_id;
        DELETE FROM agent_runs
        WHERE old.trace_id IS NOT NULL AND trace_id = old.trace_id AND events <= 0;
        UPDATE agent_run_models SET calls = calls - 1,
            reported_calls = reported_calls - (old.cost IS NOT NULL),
            reported_cost = reported_cost - coalesce(old.cost, 0),
            unreported_calls = unreported_calls - (old.cost IS NULL),
            no_usage_calls = no_usage_calls - (old.cost IS NULL AND old.priced_input IS NULL),
            priced_input = priced_input - coalesce(old.priced_input, 0),
            priced_cache_read = priced_cache_read - coalesce(old.priced_cache_read, 0),
            priced_cache_write = priced_cache_write - coalesce(old.priced_cache_write, 0),
            priced_output = priced_output - coalesce(old.priced_output, 0)
        WHERE old.llm = 1 AND old.trace_id IS NOT NULL AND trace_id = old.trace_id
            AND model = old.model;
        DELETE FROM agent_run_models
        WHERE old.llm = 1 AND old.trace_id IS NOT NULL AND trace_id = old.trace_id
            AND model = old.model AND calls <= 0;
        UPDATE agent_metric_hours SET points = points - 1,
            total = total - coalesce(old.value, 0),
            total_count = total_count - coalesce(old.count, 0)
        WHERE old.series IS NOT NULL AND series = old.series AND hour = old.hour;
        DELETE FROM agent_metric_hours
        WHERE old.series IS NOT NULL AND series = old.series AND hour = old.hour
            AND points <= 0;
    END;
"""

# Migration 15. A metric series (its name, agent and attributes: the properties of the
# points, which may name a customer, a host, a file) was registered by the fold and never
# removed: retention and eviction took every point of it out of the rollups and left the
# series itself in the file for good, past the retention that promised it gone. It now
# goes with its last hour of points, as the other rollups' cells do, and the series that
# lost theirs before are deleted once.
METRIC_SERIES_FOLLOW_THEIR_POINTS = """
    CREATE TRIGGER IF NOT EXISTS agent_metric_hours_deleted AFTER DELETE ON agent_metric_hours
    WHEN NOT EXISTS (SELECT 1 FROM agent_metric_hours WHERE series = old.series)
    BEGIN
        DELETE FROM agent_metric_series WHERE id = old.series;
    END;
    DELETE FROM agent_metric_series
    WHERE id NOT IN (SELECT series FROM agent_metric_hours);
"""
