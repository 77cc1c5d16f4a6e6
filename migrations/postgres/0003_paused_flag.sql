-- `paused` is the INTEGER flag (0/1) SPEC section 2 names, as on SQLite, so a pause set
-- by hand (`UPDATE … SET paused = 1`) reads the same on both stores.
ALTER TABLE processing_jobs ALTER COLUMN paused DROP DEFAULT;
ALTER TABLE processing_jobs ALTER COLUMN paused TYPE INTEGER USING paused::integer;
ALTER TABLE processing_jobs ALTER COLUMN paused SET DEFAULT 0;
ALTER TABLE processing_jobs ADD CONSTRAINT processing_jobs_paused_flag CHECK (paused IN (0, 1));
ALTER TABLE preprocessing_jobs ALTER COLUMN paused DROP DEFAULT;
ALTER TABLE preprocessing_jobs ALTER COLUMN paused TYPE INTEGER USING paused::integer;
ALTER TABLE preprocessing_jobs ALTER COLUMN paused SET DEFAULT 0;
ALTER TABLE preprocessing_jobs ADD CONSTRAINT preprocessing_jobs_paused_flag CHECK (paused IN (0, 1));
