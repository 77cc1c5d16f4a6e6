-- SPEC section 16: a preprocessing row's outcome (clean, duplicate, invalid,
-- unreachable), which its step writes into its result (always JSON text written by
-- jobdeck), counted and filtered by job. Stored, so counting reads the index alone;
-- the partial index holds only rows that have an outcome, so an import writes nothing
-- more.
-- Rows finished before this version have no outcome in their result: it is written
-- in by the same rule the step uses (steps/preprocess.rs `with_outcome`).
UPDATE preprocessing_results
SET result = jsonb_set(result::jsonb, '{outcome}', to_jsonb(
        CASE WHEN (result::jsonb ->> 'valid') IS DISTINCT FROM 'true' THEN 'invalid'
             WHEN (result::jsonb ->> 'duplicateOf') IS NOT NULL THEN 'duplicate'
             WHEN (result::jsonb #>> '{liveness,reachable}') IS DISTINCT FROM 'true' THEN 'unreachable'
             ELSE 'clean' END))::text
WHERE status = 'completed' AND result IS NOT NULL AND strpos(result, '\u0000') = 0
  AND NOT (result::jsonb ? 'outcome');

ALTER TABLE preprocessing_results ADD COLUMN outcome TEXT
    GENERATED ALWAYS AS (
        CASE WHEN result IS NOT NULL AND strpos(result, '\u0000') = 0 THEN (result::jsonb ->> 'outcome') END
    ) STORED;
CREATE INDEX preprocessing_results_outcome ON preprocessing_results (job_id, outcome, id)
    WHERE outcome IS NOT NULL;

-- The full research job made of a preprocessing job's clean rows: at most one.
ALTER TABLE preprocessing_jobs ADD COLUMN research_job_id BIGINT;
