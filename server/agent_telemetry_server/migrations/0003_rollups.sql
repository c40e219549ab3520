-- Daily rollup, maintained in the same transaction as each ingest.
-- Keyed by anonymous id so unique counts are exact and erasure can remove one
-- installation's contribution; still far smaller than the raw events.
CREATE TABLE rollup_daily (
    day          date   NOT NULL,             -- UTC day of the event's timestamp
    event        text   NOT NULL,
    agent        text   NOT NULL DEFAULT '',  -- '' when the event named no agent
    anonymous_id uuid   NOT NULL,
    events       bigint NOT NULL,
    errors       bigint NOT NULL,
    PRIMARY KEY (day, event, agent, anonymous_id)
);

CREATE INDEX rollup_daily_anonymous_id ON rollup_daily (anonymous_id);
