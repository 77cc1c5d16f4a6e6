-- jobdeck schema on PostgreSQL, version 1 (SPEC section 10). Append-only, like the
-- SQLite migrations beside it. The two kinds of job keep the shape they have on SQLite,
-- so one service drives both stores; what differs is what many workers need:
--   * an item remembers which worker holds it and under which lease (a number raised
--     at every claim), and a result is written only by that holder at that lease;
--   * a job's counters are rows per shard, summed on read, so workers finishing items
--     at once do not all wait on one row;
--   * workers heartbeat, and one leader at a time (a lease in `leases`) puts a dead
--     worker's items back to pending.

CREATE TABLE workers (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name         TEXT        NOT NULL,
    started_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    heartbeat_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Named leases: `leader` is held by the worker that rescues dead workers' items.
CREATE TABLE leases (
    name       TEXT PRIMARY KEY,
    holder     BIGINT      NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL
);

CREATE TABLE processing_jobs (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name          TEXT        NOT NULL,
    filename      TEXT        NOT NULL,
    status        TEXT        NOT NULL DEFAULT 'pending'
                  CHECK (status IN ('pending', 'processing', 'completed', 'failed')),
    paused        BOOLEAN     NOT NULL DEFAULT false,
    concurrency   INTEGER     NOT NULL DEFAULT 5 CHECK (concurrency BETWEEN 1 AND 64),
    columns       TEXT        NOT NULL DEFAULT '[]',
    total         BIGINT      NOT NULL DEFAULT 0,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    started_at    TIMESTAMPTZ,
    updated_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    completed_at  TIMESTAMPTZ,
    cancelled_at  TIMESTAMPTZ,
    paused_reason TEXT,
    resume_at     TIMESTAMPTZ,
    hidden        TEXT CHECK (hidden IN ('importing', 'deleting'))
);

CREATE TABLE preprocessing_jobs (LIKE processing_jobs INCLUDING DEFAULTS INCLUDING CONSTRAINTS);
ALTER TABLE preprocessing_jobs ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY, ADD PRIMARY KEY (id);

-- Counter shards: a job's count of each status is the sum over its rows.
CREATE TABLE processing_job_counts (
    job_id     BIGINT  NOT NULL REFERENCES processing_jobs (id) ON DELETE CASCADE,
    shard      INTEGER NOT NULL,
    pending    BIGINT  NOT NULL DEFAULT 0,
    processing BIGINT  NOT NULL DEFAULT 0,
    completed  BIGINT  NOT NULL DEFAULT 0,
    failed     BIGINT  NOT NULL DEFAULT 0,
    PRIMARY KEY (job_id, shard)
);
CREATE TABLE preprocessing_job_counts (
    job_id     BIGINT  NOT NULL REFERENCES preprocessing_jobs (id) ON DELETE CASCADE,
    shard      INTEGER NOT NULL,
    pending    BIGINT  NOT NULL DEFAULT 0,
    processing BIGINT  NOT NULL DEFAULT 0,
    completed  BIGINT  NOT NULL DEFAULT 0,
    failed     BIGINT  NOT NULL DEFAULT 0,
    PRIMARY KEY (job_id, shard)
);

CREATE TABLE accounts (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job_id      BIGINT  NOT NULL REFERENCES processing_jobs (id) ON DELETE CASCADE,
    line        BIGINT  NOT NULL,
    name        TEXT,
    website     TEXT,
    domain      TEXT,
    input       TEXT    NOT NULL,
    status      TEXT    NOT NULL DEFAULT 'pending'
                CHECK (status IN ('pending', 'processing', 'completed', 'failed')),
    attempts    INTEGER NOT NULL DEFAULT 0,
    error       TEXT,
    result      TEXT,
    started_at  TIMESTAMPTZ,
    finished_at TIMESTAMPTZ,
    worker_id   BIGINT,
    lease       BIGINT  NOT NULL DEFAULT 0
);

CREATE TABLE preprocessing_results (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job_id       BIGINT  NOT NULL REFERENCES preprocessing_jobs (id) ON DELETE CASCADE,
    line         BIGINT  NOT NULL,
    name         TEXT,
    website      TEXT,
    domain       TEXT,
    input        TEXT    NOT NULL,
    normalized   TEXT,
    dedupe_key   TEXT,
    duplicate_of BIGINT,
    status       TEXT    NOT NULL DEFAULT 'pending'
                 CHECK (status IN ('pending', 'processing', 'completed', 'failed')),
    attempts     INTEGER NOT NULL DEFAULT 0,
    error        TEXT,
    result       TEXT,
    started_at   TIMESTAMPTZ,
    finished_at  TIMESTAMPTZ,
    worker_id    BIGINT,
    lease        BIGINT  NOT NULL DEFAULT 0
);

-- File order, status filters, claims (pending only, so the index shrinks as a job
-- runs), the in-flight count a claim checks, and a dead worker's items.
CREATE INDEX accounts_job ON accounts (job_id, id);
CREATE INDEX accounts_job_status ON accounts (job_id, status, id);
CREATE INDEX accounts_pending ON accounts (job_id, id) WHERE status = 'pending';
CREATE INDEX accounts_processing ON accounts (job_id) WHERE status = 'processing';
CREATE INDEX accounts_worker ON accounts (worker_id) WHERE status = 'processing';
CREATE INDEX preprocessing_results_job ON preprocessing_results (job_id, id);
CREATE INDEX preprocessing_results_job_status ON preprocessing_results (job_id, status, id);
CREATE INDEX preprocessing_results_pending ON preprocessing_results (job_id, id) WHERE status = 'pending';
CREATE INDEX preprocessing_results_processing ON preprocessing_results (job_id) WHERE status = 'processing';
CREATE INDEX preprocessing_results_worker ON preprocessing_results (worker_id) WHERE status = 'processing';
CREATE INDEX preprocessing_results_dedupe ON preprocessing_results (job_id, dedupe_key, line);
