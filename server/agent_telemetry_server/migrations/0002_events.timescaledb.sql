-- Raw events as a TimescaleDB hypertable, one chunk per day: retention drops whole chunks.
CREATE EXTENSION IF NOT EXISTS timescaledb;

CREATE TABLE events (
    uuid         uuid             NOT NULL,
    ts           timestamptz      NOT NULL,
    received_at  timestamptz,
    ingested_at  timestamptz      NOT NULL DEFAULT now(),
    anonymous_id uuid             NOT NULL,
    event        text             NOT NULL,
    agent        text,
    is_error     boolean          NOT NULL,
    duration_ms  double precision,
    properties   jsonb            NOT NULL DEFAULT '{}'::jsonb,
    -- A hypertable's unique keys must include its time column. Clients fix an event's
    -- timestamp once and re-send it unchanged, so (uuid, ts) still dedupes retries.
    PRIMARY KEY (uuid, ts)
);

SELECT create_hypertable('events', 'ts', chunk_time_interval => INTERVAL '1 day');

CREATE INDEX events_anonymous_id ON events (anonymous_id, ts DESC);
