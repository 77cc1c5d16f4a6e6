-- SPEC section 8, automatic control and notifications.
-- `fail_streak`: items that failed in a row since the last one that completed (an
-- error burst pauses the job when it reaches the configured count).
ALTER TABLE processing_jobs ADD COLUMN fail_streak INTEGER NOT NULL DEFAULT 0;
ALTER TABLE preprocessing_jobs ADD COLUMN fail_streak INTEGER NOT NULL DEFAULT 0;

-- The channels this server notifies (`webhook`, `email`), written at start-up from its
-- settings: an event is queued once per channel listed here, in the transaction that
-- logs it, so no notification is lost to a crash or a restart.
CREATE TABLE notify_channels (
    channel TEXT PRIMARY KEY
);

-- Notifications not yet delivered. `payload` is the JSON body as it was when the
-- event happened; `locked_until` is the lease of the process delivering it. Ids are
-- never reused (`X-Jobdeck-Delivery` names a delivery).
CREATE TABLE outbox (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    channel      TEXT    NOT NULL,
    event        TEXT    NOT NULL,
    kind         TEXT    NOT NULL CHECK (kind IN ('research', 'preprocess')),
    job_id       INTEGER NOT NULL,
    payload      TEXT    NOT NULL,
    attempts     INTEGER NOT NULL DEFAULT 0,
    next_at      TEXT    NOT NULL,
    locked_until TEXT,
    last_error   TEXT,
    created_at   TEXT    NOT NULL
);
CREATE INDEX outbox_due ON outbox (next_at);
