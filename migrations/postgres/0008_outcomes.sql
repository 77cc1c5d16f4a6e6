-- SPEC section 16: a preprocessing row's outcome (clean, duplicate, invalid,
-- unreachable), which its step writes into its result, counted and filtered by job.
-- Stored, so counting reads the index alone; the partial index holds only rows that
-- have an outcome, so an import writes nothing more.

-- Rows finished before this version have no outcome in their result: it is added by
-- the same rule the step uses (steps/preprocess.rs `with_outcome`), as the step's
-- own JSON would carry it (its last key, no white space).
UPDATE preprocessing_results
SET result = left(result, -1) || ',"outcome":"' ||
        CASE WHEN (result::jsonb ->> 'valid') IS DISTINCT FROM 'true' THEN 'invalid'
             WHEN (result::jsonb ->> 'duplicateOf') IS NOT NULL THEN 'duplicate'
             WHEN (result::jsonb #>> '{liveness,reachable}') IS DISTINCT FROM 'true' THEN 'unreachable'
             ELSE 'clean' END || '"}'
WHERE status = 'completed' AND result LIKE '{%}' AND length(result) > 2 AND strpos(result, '\u0000') = 0
  AND NOT (result::jsonb ? 'outcome');

-- Read by a text search, not a JSON parse: a result is JSON that jobdeck wrote, with
-- no white space, whose only "outcome" key is the step's (a quote inside a string is
-- escaped, so the pattern cannot match inside one). No result can make it fail.
ALTER TABLE preprocessing_results ADD COLUMN outcome TEXT GENERATED ALWAYS AS (
    CASE WHEN result IS NULL THEN NULL
         WHEN strpos(result, '"outcome":"clean"') > 0 THEN 'clean'
         WHEN strpos(result, '"outcome":"duplicate"') > 0 THEN 'duplicate'
         WHEN strpos(result, '"outcome":"invalid"') > 0 THEN 'invalid'
         WHEN strpos(result, '"outcome":"unreachable"') > 0 THEN 'unreachable' END) STORED;
CREATE INDEX preprocessing_results_outcome ON preprocessing_results (job_id, outcome, id)
    WHERE outcome IS NOT NULL;

-- The full research job made of a preprocessing job's clean rows: at most one.
ALTER TABLE preprocessing_jobs ADD COLUMN research_job_id BIGINT;
