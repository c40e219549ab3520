"""Migration 17 of the agent analytics' tables (store/migrations.py): the rollups that
name a model keep both of a call's names and the hour it was made.

Like every migration, it is never edited once released; a change is a new migration."""

from agent_telemetryd.store.analytics_schema import METRIC_SERIES_FOLLOW_THEIR_POINTS

# Migration 17. An LLM call is counted under the model that answered
# (`gen_ai.response.model`), else the one asked for, and priced by either name (see
# `analytics.prices.PriceBook.price_for`): behind Azure OpenAI, LiteLLM or OpenRouter the
# name asked for is a deployment or alias no price table knows. The rollups that name a
# model keep the name asked for too (`requested`, '' when it is the same or absent), so a
# call is priced by its pair of names and a filter by either name finds it. They also
# keep the hour the call was made (`called_hour`: its own timestamp, never later than its
# receipt), whose prices it is charged at: a call an agent spooled while the daemon was
# down and delivered after a price change was made at the old price. Tables made again,
# since their keys change, and every event folded again by the new rule (as 14 did):
# until then the views read the unfolded events themselves.
ASKED_MODEL_TABLES = """
    CREATE TABLE agent_facts (
        id INTEGER PRIMARY KEY,
        hour INTEGER NOT NULL,
        called_hour INTEGER NOT NULL,
        agent TEXT NOT NULL,
        event TEXT NOT NULL,
        llm INTEGER NOT NULL,
        model TEXT NOT NULL,
        requested TEXT NOT NULL,
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
    CREATE TABLE agent_models (
        hour INTEGER NOT NULL,
        agent TEXT NOT NULL,
        event TEXT NOT NULL,
        model TEXT NOT NULL,
        requested TEXT NOT NULL,
        called_hour INTEGER NOT NULL,
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
        PRIMARY KEY (hour, agent, event, model, requested, called_hour)
    ) WITHOUT ROWID;
    -- `requested` after the bucket: the per-name percentiles still read cells in order.
    -- A tool's is ''.
    CREATE TABLE agent_durations (
        kind TEXT NOT NULL,
        name TEXT NOT NULL,
        bucket REAL NOT NULL,
        requested TEXT NOT NULL,
        hour INTEGER NOT NULL,
        agent TEXT NOT NULL,
        event TEXT NOT NULL,
        n INTEGER NOT NULL,
        PRIMARY KEY (kind, name, bucket, requested, hour, agent, event)
    ) WITHOUT ROWID;
    CREATE TABLE agent_run_models (
        trace_id TEXT NOT NULL,
        model TEXT NOT NULL,
        requested TEXT NOT NULL,
        called_hour INTEGER NOT NULL,  -- of the run's first call of the pair
        calls INTEGER NOT NULL,
        reported_calls INTEGER NOT NULL,
        reported_cost REAL NOT NULL,
        unreported_calls INTEGER NOT NULL,
        no_usage_calls INTEGER NOT NULL,
        priced_input NOT NULL,
        priced_cache_read NOT NULL,
        priced_cache_write NOT NULL,
        priced_output NOT NULL,
        PRIMARY KEY (trace_id, model, requested)
    ) WITHOUT ROWID;
"""
# Migration 9's trigger with `requested` in the keys; the rest as it was.
ASKED_MODEL_TRIGGER = """
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
            AND model = old.model AND requested = old.requested
            AND called_hour = old.called_hour;
        DELETE FROM agent_models
        WHERE old.llm = 1 AND hour = old.hour AND agent = old.agent AND event = old.event
            AND model = old.model AND requested = old.requested
            AND called_hour = old.called_hour AND calls <= 0;
        UPDATE agent_tools SET calls = calls - 1, errors = errors - old.error
        WHERE old.tool IS NOT NULL AND hour = old.hour AND agent = old.agent
            AND event = old.event AND tool = old.tool;
        DELETE FROM agent_tools
        WHERE old.tool IS NOT NULL AND hour = old.hour AND agent = old.agent
            AND event = old.event AND tool = old.tool AND calls <= 0;
        UPDATE agent_durations SET n = n - 1
        WHERE old.llm = 1 AND old.bucket IS NOT NULL AND kind = 'model' AND name = old.model
            AND bucket = old.bucket AND requested = old.requested AND hour = old.hour
            AND agent = old.agent AND event = old.event;
        UPDATE agent_durations SET n = n - 1
        WHERE old.tool IS NOT NULL AND old.bucket IS NOT NULL AND kind = 'tool'
            AND name = old.tool AND bucket = old.bucket AND requested = '' AND hour = old.hour
            AND agent = old.agent AND event = old.event;
        DELETE FROM agent_durations
        WHERE old.bucket IS NOT NULL AND kind IN ('model', 'tool')
            AND name IN (old.model, old.tool) AND bucket = old.bucket
            AND requested IN (old.requested, '') AND hour = old.hour
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
            AND model = old.model AND requested = old.requested;
        DELETE FROM agent_run_models
        WHERE old.llm = 1 AND old.trace_id IS NOT NULL AND trace_id = old.trace_id
            AND model = old.model AND requested = old.requested AND calls <= 0;
        UPDATE agent_metric_hours SET points = points - 1,
            total = total - coalesce(old.value, 0),
            total_count = total_count - coalesce(old.count, 0)
        WHERE old.series IS NOT NULL AND series = old.series AND hour = old.hour;
        DELETE FROM agent_metric_hours
        WHERE old.series IS NOT NULL AND series = old.series AND hour = old.hour
            AND points <= 0;
    END;
"""
# Dropping a table fires no trigger (agent_facts' own goes with it), so the old rows
# take nothing out of rollups that are emptied anyway. agent_metric_series is emptied
# too: migration 15's trigger would delete each series with its last hour, row by row,
# and the fold registers every series again.
KEEP_ASKED_MODELS = (
    """
    DROP TABLE agent_facts;
    DROP TABLE agent_models;
    DROP TABLE agent_durations;
    DROP TABLE agent_run_models;
    DROP TRIGGER agent_metric_hours_deleted;
    DELETE FROM agent_metric_hours;
    DELETE FROM agent_metric_series;
    DELETE FROM agent_tools;
    DELETE FROM agent_runs;
    UPDATE agent_state SET folded_id = 0;
    """
    + ASKED_MODEL_TABLES
    + ASKED_MODEL_TRIGGER
    + METRIC_SERIES_FOLLOW_THEIR_POINTS
)
