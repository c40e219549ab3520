-- Models, tokens, cost, tools and duration histograms per UTC day and installation,
-- maintained in the same statement as each ingest (ingest.py), like rollup_daily.
--
-- The vocabulary is OpenTelemetry's GenAI names first, then the short forms a shim user
-- types, so events from every client and daemon version count alike:
--   model          gen_ai.response.model, else gen_ai.request.model, else model
--   input tokens   gen_ai.usage.input_tokens, else input_tokens, else tokens_in
--   output tokens  gen_ai.usage.output_tokens, else output_tokens, else tokens_out
--   tool           gen_ai.tool.name, else tool
--   cost           cost_usd, as the client reported it; the server never prices tokens
-- The rules live in these functions only, shared by the ingest statement and the backfill
-- below. Values of the wrong type or out of range are ignored, never an error: a bad
-- property must not fail its batch.

-- A non-empty string property made one line (control characters and runs of white space
-- become one space), at most 200 characters; else NULL.
CREATE FUNCTION telemetry_name(v jsonb) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN jsonb_typeof(v) = 'string' THEN
        nullif(left(btrim(regexp_replace(v #>> '{}', '[[:cntrl:][:space:]]+', ' ', 'g')), 200), '')
    END
$$;

-- A whole count from a number property from 0 to 10^15 (rounded); else NULL.
-- Nested CASE, not AND: only a CASE guarantees the cast runs on numbers alone.
CREATE FUNCTION telemetry_count(v jsonb) RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN jsonb_typeof(v) = 'number' THEN
        CASE WHEN v::numeric >= 0 AND v::numeric < 1e15 THEN round(v::numeric)::bigint END
    END
$$;

CREATE FUNCTION telemetry_model(p jsonb) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT coalesce(telemetry_name(p -> 'gen_ai.response.model'),
                    telemetry_name(p -> 'gen_ai.request.model'),
                    telemetry_name(p -> 'model'))
$$;

CREATE FUNCTION telemetry_tool(p jsonb) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT coalesce(telemetry_name(p -> 'gen_ai.tool.name'), telemetry_name(p -> 'tool'))
$$;

CREATE FUNCTION telemetry_input_tokens(p jsonb) RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT coalesce(telemetry_count(p -> 'gen_ai.usage.input_tokens'),
                    telemetry_count(p -> 'input_tokens'),
                    telemetry_count(p -> 'tokens_in'))
$$;

CREATE FUNCTION telemetry_output_tokens(p jsonb) RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT coalesce(telemetry_count(p -> 'gen_ai.usage.output_tokens'),
                    telemetry_count(p -> 'output_tokens'),
                    telemetry_count(p -> 'tokens_out'))
$$;

-- The reported cost in US dollars, from 0 to 10^9; else NULL ("cost unknown").
CREATE FUNCTION telemetry_cost_usd(p jsonb) RETURNS numeric
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN jsonb_typeof(p -> 'cost_usd') = 'number' THEN
        CASE WHEN (p -> 'cost_usd')::numeric BETWEEN 0 AND 1e9
             THEN (p -> 'cost_usd')::numeric END
    END
$$;

-- A duration's histogram bucket: whole milliseconds below 100 ms, two significant digits
-- above (1234 → 1200), so a percentile read from the buckets is within 5% of the exact one
-- while one installation's day holds at most ~90 buckets a decade.
CREATE FUNCTION telemetry_duration_bucket(ms double precision) RETURNS double precision
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN ms < 100 THEN round(ms)
                ELSE round(ms / 10 ^ (floor(log(ms)) - 1)) * 10 ^ (floor(log(ms)) - 1) END
$$;

-- One row per installation and active day: installations per day and in a window
-- without going through rollup_daily's (event, agent) rows.
CREATE TABLE rollup_installs_daily (
    day          date   NOT NULL,
    anonymous_id uuid   NOT NULL,
    events       bigint NOT NULL,
    errors       bigint NOT NULL,
    PRIMARY KEY (day, anonymous_id)
);
CREATE INDEX rollup_installs_daily_anonymous_id ON rollup_installs_daily (anonymous_id);

-- Events that name a model: its calls, errors, tokens and reported cost.
-- Keyed by anonymous id, as rollup_daily is, so install counts are exact and erasure
-- removes one installation's share.
CREATE TABLE rollup_models_daily (
    day           date    NOT NULL,
    model         text    NOT NULL,
    agent         text    NOT NULL DEFAULT '',
    anonymous_id  uuid    NOT NULL,
    calls         bigint  NOT NULL,
    errors        bigint  NOT NULL,
    input_tokens  bigint  NOT NULL,
    output_tokens bigint  NOT NULL,
    costed_calls  bigint  NOT NULL,   -- calls that reported cost_usd
    cost_usd      numeric NOT NULL,   -- the sum of what they reported
    PRIMARY KEY (day, model, agent, anonymous_id)
);
CREATE INDEX rollup_models_daily_anonymous_id ON rollup_models_daily (anonymous_id);

-- Events that name a tool.
CREATE TABLE rollup_tools_daily (
    day          date   NOT NULL,
    tool         text   NOT NULL,
    agent        text   NOT NULL DEFAULT '',
    anonymous_id uuid   NOT NULL,
    calls        bigint NOT NULL,
    errors       bigint NOT NULL,
    PRIMARY KEY (day, tool, agent, anonymous_id)
);
CREATE INDEX rollup_tools_daily_anonymous_id ON rollup_tools_daily (anonymous_id);

-- Histograms of properties.duration_ms by event name, by model and by tool, for every
-- installation together: no anonymous id here, which keeps the table to a few thousand
-- rows a day whatever the number of installations. Erasure subtracts an installation's
-- samples, worked out again from its raw events (ingest.erase); retention drops a day
-- as soon as any of its raw events are gone, so the raw events behind every stored
-- histogram are always there to subtract.
-- `shard` (0-7, from the installation's id) spreads the rows: batches of different
-- installations upsert in different shards, so they rarely wait for each other's row
-- locks; without it, concurrent batches queued on the popular buckets of the day and
-- ingest ran at half the speed. Readers sum the shards.
CREATE TABLE rollup_durations_daily (
    day       date             NOT NULL,
    kind      text             NOT NULL CHECK (kind IN ('event', 'model', 'tool')),
    name      text             NOT NULL,
    shard     smallint         NOT NULL,
    bucket_ms double precision NOT NULL,
    samples   bigint           NOT NULL,
    PRIMARY KEY (day, kind, name, shard, bucket_ms)
);

-- The shard of an installation: the low bits of its id's last byte (random in a v4 UUID),
-- not a hash function whose output could change with a PostgreSQL upgrade.
CREATE FUNCTION telemetry_shard(anonymous_id uuid) RETURNS smallint
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT (get_byte(uuid_send(anonymous_id), 15) & 7)::smallint
$$;

-- An event's duration samples, one row per histogram it counts in (ingest, backfill,
-- erasure all read it from here).
CREATE FUNCTION telemetry_duration_samples(
    event text, properties jsonb, duration_ms double precision
) RETURNS TABLE (kind text, name text, bucket_ms double precision)
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT d.kind, d.name, telemetry_duration_bucket(duration_ms)
    FROM (VALUES ('event', event), ('model', telemetry_model(properties)),
                 ('tool', telemetry_tool(properties))) AS d (kind, name)
    WHERE duration_ms IS NOT NULL AND d.name IS NOT NULL
$$;

INSERT INTO rollup_installs_daily
SELECT day, anonymous_id, sum(events), sum(errors) FROM rollup_daily GROUP BY day, anonymous_id;

-- Backfill from the raw events already stored (they cover the retention window, as the
-- rollups do), so the new views are complete from the first request after the upgrade.
CREATE TEMP TABLE backfill_facts ON COMMIT DROP AS
SELECT (ts AT TIME ZONE 'UTC')::date AS day, event, coalesce(agent, '') AS agent,
       anonymous_id, is_error,
       telemetry_model(properties) AS model, telemetry_tool(properties) AS tool,
       telemetry_input_tokens(properties) AS input_tokens,
       telemetry_output_tokens(properties) AS output_tokens,
       telemetry_cost_usd(properties) AS cost_usd
FROM events;

INSERT INTO rollup_models_daily
SELECT day, model, agent, anonymous_id, count(*), count(*) FILTER (WHERE is_error),
       coalesce(sum(input_tokens), 0), coalesce(sum(output_tokens), 0),
       count(cost_usd), coalesce(sum(cost_usd), 0)
FROM backfill_facts WHERE model IS NOT NULL
GROUP BY day, model, agent, anonymous_id;

INSERT INTO rollup_tools_daily
SELECT day, tool, agent, anonymous_id, count(*), count(*) FILTER (WHERE is_error)
FROM backfill_facts WHERE tool IS NOT NULL
GROUP BY day, tool, agent, anonymous_id;

INSERT INTO rollup_durations_daily
SELECT (e.ts AT TIME ZONE 'UTC')::date, d.kind, d.name, telemetry_shard(e.anonymous_id),
       d.bucket_ms, count(*)
FROM events e
CROSS JOIN LATERAL telemetry_duration_samples(e.event, e.properties, e.duration_ms) AS d
GROUP BY 1, 2, 3, 4, 5;
