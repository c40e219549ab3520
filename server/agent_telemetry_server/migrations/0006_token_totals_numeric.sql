-- Token totals in numeric, not bigint: one installation's calls, each within the accepted
-- range (below 10^15 tokens), pass bigint's 9.2 * 10^18 after some 9,300 calls in a day,
-- and from then on the rollup update failed, and with it every later batch of that day.
ALTER TABLE rollup_models_daily
    ALTER COLUMN input_tokens TYPE numeric,
    ALTER COLUMN output_tokens TYPE numeric;

-- The histogram bucket of 0005, the same for every duration it could bucket, but never an
-- error: rounding a duration near float8's maximum up to two significant digits overflowed
-- (1.79e308 → 1.8e308), and that error failed the batch. Such a duration is kept as it is.
-- Ingest no longer passes durations that large; this keeps any that reach here harmless.
-- One expression without FROM, so PostgreSQL still inlines it into the ingest statement.
CREATE OR REPLACE FUNCTION telemetry_duration_bucket(ms double precision)
RETURNS double precision
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN ms < 100 THEN round(ms)
                WHEN round(ms / 10 ^ (floor(log(ms)) - 1))
                     <= '1.7976931348623157e308'::float8 / 10 ^ (floor(log(ms)) - 1) THEN
                    round(ms / 10 ^ (floor(log(ms)) - 1)) * 10 ^ (floor(log(ms)) - 1)
                ELSE ms END
$$;
