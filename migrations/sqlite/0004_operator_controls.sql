-- SPEC section 8: archived jobs, scheduled pause and resume times, and each job's
-- activity log. An event names its job by kind and id (the two kinds live in two
-- tables); a job's events are removed with its items when the job is deleted.
ALTER TABLE processing_jobs ADD COLUMN archived_at TEXT;
ALTER TABLE processing_jobs ADD COLUMN scheduled_pause_at TEXT;
ALTER TABLE processing_jobs ADD COLUMN scheduled_resume_at TEXT;
ALTER TABLE preprocessing_jobs ADD COLUMN archived_at TEXT;
ALTER TABLE preprocessing_jobs ADD COLUMN scheduled_pause_at TEXT;
ALTER TABLE preprocessing_jobs ADD COLUMN scheduled_resume_at TEXT;

CREATE TABLE job_events (
    id     INTEGER PRIMARY KEY,
    kind   TEXT    NOT NULL CHECK (kind IN ('research', 'preprocess')),
    job_id INTEGER NOT NULL,
    at     TEXT    NOT NULL,
    action TEXT    NOT NULL,
    source TEXT    NOT NULL,
    detail TEXT
);
CREATE INDEX job_events_job ON job_events (kind, job_id, id);
