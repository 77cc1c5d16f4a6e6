-- SPEC section 16: a preprocessing row's outcome (clean, duplicate, invalid,
-- unreachable), which its step writes into its result (always JSON text written by
-- jobdeck), counted and filtered by job. Stored, so counting reads the index alone;
-- the partial index holds only rows that have an outcome, so an import writes nothing
-- more.
ALTER TABLE preprocessing_results ADD COLUMN outcome TEXT
    GENERATED ALWAYS AS (CASE WHEN result IS NOT NULL THEN (result::jsonb ->> 'outcome') END) STORED;
CREATE INDEX preprocessing_results_outcome ON preprocessing_results (job_id, outcome, id)
    WHERE outcome IS NOT NULL;

-- The full research job made of a preprocessing job's clean rows: at most one.
ALTER TABLE preprocessing_jobs ADD COLUMN research_job_id BIGINT;
