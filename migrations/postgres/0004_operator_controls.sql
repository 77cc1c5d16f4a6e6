-- SPEC section 8, as migration 0004 on SQLite: archived jobs, scheduled pause and
-- resume times, and each job's activity log (removed with the job's items).
ALTER TABLE processing_jobs ADD COLUMN archived_at TIMESTAMPTZ,
    ADD COLUMN scheduled_pause_at TIMESTAMPTZ, ADD COLUMN scheduled_resume_at TIMESTAMPTZ;
ALTER TABLE preprocessing_jobs ADD COLUMN archived_at TIMESTAMPTZ,
    ADD COLUMN scheduled_pause_at TIMESTAMPTZ, ADD COLUMN scheduled_resume_at TIMESTAMPTZ;

CREATE TABLE job_events (
    id     BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind   TEXT        NOT NULL CHECK (kind IN ('research', 'preprocess')),
    job_id BIGINT      NOT NULL,
    at     TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    action TEXT        NOT NULL,
    source TEXT        NOT NULL,
    detail TEXT
);
CREATE INDEX job_events_job ON job_events (kind, job_id, id);
