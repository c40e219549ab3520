-- Raw events on plain PostgreSQL.
-- Rows arrive in roughly time order (clients upload within hours), so a BRIN index on ts
-- stays small and precise enough for the range scans of retention and analytics.
CREATE TABLE events (
    uuid         uuid             PRIMARY KEY,   -- dedupe: the same event twice is stored once
    ts           timestamptz      NOT NULL,      -- the client's timestamp of the event
    received_at  timestamptz,                    -- when the client's daemon received it
    ingested_at  timestamptz      NOT NULL DEFAULT now(),
    anonymous_id uuid             NOT NULL,
    event        text             NOT NULL,
    agent        text,
    is_error     boolean          NOT NULL,      -- the documented error rule, applied on ingest
    duration_ms  double precision,               -- properties.duration_ms when numeric
    properties   jsonb            NOT NULL DEFAULT '{}'::jsonb
);

CREATE INDEX events_ts_brin ON events USING brin (ts) WITH (pages_per_range = 32);
-- Erasure finds one installation's rows without scanning the table.
CREATE INDEX events_anonymous_id ON events (anonymous_id);
