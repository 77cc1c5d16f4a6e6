-- jobdeck schema, version 1. Migrations are append-only: never edit a released file.
-- Both kinds of job share one shape so one engine drives them; counters are kept with
-- every item transition so status reads never count rows.

CREATE TABLE processing_jobs (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    name             TEXT    NOT NULL,
    filename         TEXT    NOT NULL,
    status           TEXT    NOT NULL DEFAULT 'pending'
                     CHECK (status IN ('pending', 'processing', 'completed', 'failed')),
    paused           INTEGER NOT NULL DEFAULT 0 CHECK (paused IN (0, 1)),
    concurrency      INTEGER NOT NULL DEFAULT 5 CHECK (concurrency BETWEEN 1 AND 64),
    columns          TEXT    NOT NULL DEFAULT '[]',
    total            INTEGER NOT NULL DEFAULT 0,
    pending_count    INTEGER NOT NULL DEFAULT 0,
    processing_count INTEGER NOT NULL DEFAULT 0,
    completed_count  INTEGER NOT NULL DEFAULT 0,
    failed_count     INTEGER NOT NULL DEFAULT 0,
    created_at       TEXT    NOT NULL,
    started_at       TEXT,
    updated_at       TEXT    NOT NULL,
    completed_at     TEXT,
    cancelled_at     TEXT,
    paused_reason    TEXT,
    resume_at        TEXT
);

CREATE TABLE accounts (
    id          INTEGER PRIMARY KEY,
    job_id      INTEGER NOT NULL REFERENCES processing_jobs (id) ON DELETE CASCADE,
    line        INTEGER NOT NULL,
    name        TEXT,
    website     TEXT,
    domain      TEXT,
    input       TEXT    NOT NULL,
    status      TEXT    NOT NULL DEFAULT 'pending'
                CHECK (status IN ('pending', 'processing', 'completed', 'failed')),
    attempts    INTEGER NOT NULL DEFAULT 0,
    error       TEXT,
    result      TEXT,
    started_at  TEXT,
    finished_at TEXT
);
CREATE INDEX accounts_job_status ON accounts (job_id, status, id);

CREATE TABLE preprocessing_jobs (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    name             TEXT    NOT NULL,
    filename         TEXT    NOT NULL,
    status           TEXT    NOT NULL DEFAULT 'pending'
                     CHECK (status IN ('pending', 'processing', 'completed', 'failed')),
    paused           INTEGER NOT NULL DEFAULT 0 CHECK (paused IN (0, 1)),
    concurrency      INTEGER NOT NULL DEFAULT 5 CHECK (concurrency BETWEEN 1 AND 64),
    columns          TEXT    NOT NULL DEFAULT '[]',
    total            INTEGER NOT NULL DEFAULT 0,
    pending_count    INTEGER NOT NULL DEFAULT 0,
    processing_count INTEGER NOT NULL DEFAULT 0,
    completed_count  INTEGER NOT NULL DEFAULT 0,
    failed_count     INTEGER NOT NULL DEFAULT 0,
    created_at       TEXT    NOT NULL,
    started_at       TEXT,
    updated_at       TEXT    NOT NULL,
    completed_at     TEXT,
    cancelled_at     TEXT,
    paused_reason    TEXT,
    resume_at        TEXT
);

-- One row per input row. `normalized` is what cleaning and validation found at import
-- (pure, no network); `result` adds the liveness check the runner does.
CREATE TABLE preprocessing_results (
    id           INTEGER PRIMARY KEY,
    job_id       INTEGER NOT NULL REFERENCES preprocessing_jobs (id) ON DELETE CASCADE,
    line         INTEGER NOT NULL,
    name         TEXT,
    website      TEXT,
    domain       TEXT,
    input        TEXT    NOT NULL,
    normalized   TEXT,
    dedupe_key   TEXT,
    duplicate_of INTEGER,
    status       TEXT    NOT NULL DEFAULT 'pending'
                 CHECK (status IN ('pending', 'processing', 'completed', 'failed')),
    attempts     INTEGER NOT NULL DEFAULT 0,
    error        TEXT,
    result       TEXT,
    started_at   TEXT,
    finished_at  TEXT
);
CREATE INDEX preprocessing_results_job_status ON preprocessing_results (job_id, status, id);
CREATE INDEX preprocessing_results_dedupe ON preprocessing_results (job_id, dedupe_key, line);
