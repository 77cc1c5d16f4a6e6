-- SPEC section 16: a preprocessing row's outcome (clean, duplicate, invalid,
-- unreachable), which its step writes into its result, counted and filtered by job.
-- A virtual column costs no space in the row; the partial index holds only rows that
-- have an outcome, so an import writes nothing more, and counting a million rows'
-- outcomes reads the index, not the rows.
-- Rows finished before this version have no outcome in their result: it is written
-- in by the same rule the step uses (steps/preprocess.rs `with_outcome`).
UPDATE preprocessing_results
SET result = json_set(result, '$.outcome',
    CASE WHEN json_extract(result, '$.valid') IS NOT 1 THEN 'invalid'
         WHEN json_extract(result, '$.duplicateOf') IS NOT NULL THEN 'duplicate'
         WHEN json_extract(result, '$.liveness.reachable') IS NOT 1 THEN 'unreachable'
         ELSE 'clean' END)
WHERE status = 'completed' AND json_valid(result) AND json_extract(result, '$.outcome') IS NULL;

-- Read by a text search, not a JSON parse: a result is JSON that jobdeck wrote, with
-- no white space, whose only "outcome" key is the step's (a quote inside a string is
-- escaped, so the pattern cannot match inside one). Parsing each result as it is
-- written cost the engine a third of its speed.
ALTER TABLE preprocessing_results ADD COLUMN outcome TEXT GENERATED ALWAYS AS (
    CASE WHEN result IS NULL THEN NULL
         WHEN instr(result, '"outcome":"clean"') THEN 'clean'
         WHEN instr(result, '"outcome":"duplicate"') THEN 'duplicate'
         WHEN instr(result, '"outcome":"invalid"') THEN 'invalid'
         WHEN instr(result, '"outcome":"unreachable"') THEN 'unreachable' END) VIRTUAL;
CREATE INDEX preprocessing_results_outcome ON preprocessing_results (job_id, outcome, id)
    WHERE outcome IS NOT NULL;

-- The full research job made of a preprocessing job's clean rows: at most one.
ALTER TABLE preprocessing_jobs ADD COLUMN research_job_id INTEGER;
