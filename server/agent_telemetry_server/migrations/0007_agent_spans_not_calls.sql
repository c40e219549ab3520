-- An agent's own span (gen_ai.operation.name invoke_agent, create_agent or
-- invoke_workflow) names the model its calls used and carries their summed tokens and
-- cost. Counted as one more call of that model, it doubled a run's calls, tokens and cost,
-- and put the length of whole runs into the model's latency. It now counts as an event
-- (rollup_daily, its duration by event name) and not as a call: the same rule as the
-- daemon's own views. Other operations (chat, text_completion, embeddings, execute_tool,
-- none at all) count as before.

-- First the agent spans still stored are taken out of what the old rule rolled up, as an
-- erasure takes out an installation (the functions are still the old ones here). Exact
-- for every day whose raw events are kept; a span retention already deleted stays counted.
CREATE TEMP TABLE agent_spans ON COMMIT DROP AS
SELECT (ts AT TIME ZONE 'UTC')::date AS day, coalesce(agent, '') AS agent, anonymous_id,
       is_error, event, properties, duration_ms, telemetry_model(properties) AS model
FROM events
WHERE properties ->> 'gen_ai.operation.name' IN ('invoke_agent', 'create_agent', 'invoke_workflow')
  AND telemetry_model(properties) IS NOT NULL;

UPDATE rollup_models_daily AS r
SET calls = r.calls - g.calls, errors = r.errors - g.errors,
    input_tokens = r.input_tokens - g.input_tokens,
    output_tokens = r.output_tokens - g.output_tokens,
    costed_calls = r.costed_calls - g.costed_calls, cost_usd = r.cost_usd - g.cost_usd
FROM (SELECT day, model, agent, anonymous_id, count(*) AS calls,
             count(*) FILTER (WHERE is_error) AS errors,
             coalesce(sum(telemetry_input_tokens(properties)), 0) AS input_tokens,
             coalesce(sum(telemetry_output_tokens(properties)), 0) AS output_tokens,
             count(telemetry_cost_usd(properties)) AS costed_calls,
             coalesce(sum(telemetry_cost_usd(properties)), 0) AS cost_usd
      FROM agent_spans GROUP BY 1, 2, 3, 4) AS g
WHERE (r.day, r.model, r.agent, r.anonymous_id) = (g.day, g.model, g.agent, g.anonymous_id);
DELETE FROM rollup_models_daily WHERE calls <= 0;

UPDATE rollup_durations_daily AS r SET samples = r.samples - g.samples
FROM (SELECT s.day, d.kind, d.name, telemetry_shard(s.anonymous_id) AS shard, d.bucket_ms,
             count(*) AS samples
      FROM agent_spans AS s
      CROSS JOIN LATERAL telemetry_duration_samples(s.event, s.properties, s.duration_ms) AS d
      WHERE d.kind = 'model'
      GROUP BY 1, 2, 3, 4, 5) AS g
WHERE (r.day, r.kind, r.name, r.shard, r.bucket_ms)
    = (g.day, g.kind, g.name, g.shard, g.bucket_ms);
DELETE FROM rollup_durations_daily WHERE samples <= 0;

-- Then the rule itself, for ingest, erasure and every later read.
CREATE OR REPLACE FUNCTION telemetry_model(p jsonb) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN p ->> 'gen_ai.operation.name'
                     IN ('invoke_agent', 'create_agent', 'invoke_workflow') THEN NULL
                ELSE coalesce(telemetry_name(p -> 'gen_ai.response.model'),
                              telemetry_name(p -> 'gen_ai.request.model'),
                              telemetry_name(p -> 'model')) END
$$;
