-- SPEC section 8, as migration 0005 on SQLite: the failure streak an error burst is
-- counted by, the channels this deployment notifies, and the durable outbox of
-- notifications not yet delivered.
ALTER TABLE processing_jobs ADD COLUMN fail_streak INTEGER NOT NULL DEFAULT 0;
ALTER TABLE preprocessing_jobs ADD COLUMN fail_streak INTEGER NOT NULL DEFAULT 0;

CREATE TABLE notify_channels (
    channel TEXT PRIMARY KEY
);

CREATE TABLE outbox (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    channel      TEXT        NOT NULL,
    event        TEXT        NOT NULL,
    kind         TEXT        NOT NULL CHECK (kind IN ('research', 'preprocess')),
    job_id       BIGINT      NOT NULL,
    payload      TEXT        NOT NULL,
    attempts     INTEGER     NOT NULL DEFAULT 0,
    next_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    locked_until TIMESTAMPTZ,
    last_error   TEXT,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX outbox_due ON outbox (next_at);
