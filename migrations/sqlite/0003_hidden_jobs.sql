-- A job being imported in chunks, or being deleted in batches, is invisible to every
-- read and to the runner: `hidden` says which. An import that never finished (a crash)
-- and a delete that never finished are both completed at start-up by removing the
-- job's items in batches and then the job row.
ALTER TABLE processing_jobs ADD COLUMN hidden TEXT CHECK (hidden IN ('importing', 'deleting'));
ALTER TABLE preprocessing_jobs ADD COLUMN hidden TEXT CHECK (hidden IN ('importing', 'deleting'));
