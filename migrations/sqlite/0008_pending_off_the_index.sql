-- Pending items leave the status index, and a job claims through a cursor instead.
-- Every imported row is pending, so each one cost an entry in (job_id, status, id):
-- the second b-tree write of every row of an import. The index now holds only items
-- that have started (processing, completed, failed), which is what item pages filtered
-- by those states, a retry and start-up recovery look up.
--
-- `next_item` is the claim cursor: no pending item of the job has a smaller id. A
-- claim scans the job's id range upwards from it and moves it past what it took;
-- whatever puts an item back to pending (a retry, a requeue, start-up recovery) lowers
-- it to that item in the same transaction. NULL means the job's first item.
DROP INDEX accounts_job_status;
CREATE INDEX accounts_job_status ON accounts (job_id, status, id) WHERE status <> 'pending';
DROP INDEX preprocessing_results_job_status;
CREATE INDEX preprocessing_results_job_status ON preprocessing_results (job_id, status, id)
    WHERE status <> 'pending';
ALTER TABLE processing_jobs ADD COLUMN next_item INTEGER;
ALTER TABLE preprocessing_jobs ADD COLUMN next_item INTEGER;
