-- SPEC section 16: a preprocessing row's outcome (clean, duplicate, invalid,
-- unreachable), which its step writes into its result, counted and filtered by job.
-- A virtual column costs no space in the row; the partial index holds only rows that
-- have an outcome, so an import writes nothing more, and counting a million rows'
-- outcomes reads the index, not the rows.
ALTER TABLE preprocessing_results ADD COLUMN outcome TEXT
    GENERATED ALWAYS AS (CASE WHEN json_valid(result) THEN json_extract(result, '$.outcome') END) VIRTUAL;
CREATE INDEX preprocessing_results_outcome ON preprocessing_results (job_id, outcome, id)
    WHERE outcome IS NOT NULL;

-- The full research job made of a preprocessing job's clean rows: at most one.
ALTER TABLE preprocessing_jobs ADD COLUMN research_job_id INTEGER;
