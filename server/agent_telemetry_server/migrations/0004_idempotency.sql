-- One row per Idempotency-Key, written in the same transaction as the batch's events,
-- so a retried batch is answered with the original result and stores nothing new.
CREATE TABLE idempotency_keys (
    anonymous_id    uuid        NOT NULL,
    idempotency_key text        NOT NULL,
    fingerprint     text        NOT NULL,   -- sha256 of the batch's event uuids
    response        jsonb,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (anonymous_id, idempotency_key)
);

CREATE INDEX idempotency_keys_created_at ON idempotency_keys (created_at);
