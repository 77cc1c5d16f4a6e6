-- Each job keeps the smallest and largest id of its items. Items are inserted in file
-- order with ids above every existing one, so a job's items are one run of ids (or a
-- few, when imports overlap): reading or deleting them in file order is a scan of the
-- table itself between the two, filtered by job_id, and the index on job_id alone that
-- did it before (0002) goes. Every imported row was written into that index too; it
-- was the third b-tree of each insert.
ALTER TABLE processing_jobs ADD COLUMN first_item INTEGER;
ALTER TABLE processing_jobs ADD COLUMN last_item INTEGER;
ALTER TABLE preprocessing_jobs ADD COLUMN first_item INTEGER;
ALTER TABLE preprocessing_jobs ADD COLUMN last_item INTEGER;

UPDATE processing_jobs SET
    first_item = (SELECT MIN(id) FROM accounts WHERE job_id = processing_jobs.id),
    last_item = (SELECT MAX(id) FROM accounts WHERE job_id = processing_jobs.id);
UPDATE preprocessing_jobs SET
    first_item = (SELECT MIN(id) FROM preprocessing_results WHERE job_id = preprocessing_jobs.id),
    last_item = (SELECT MAX(id) FROM preprocessing_results WHERE job_id = preprocessing_jobs.id);

DROP INDEX accounts_job;
DROP INDEX preprocessing_results_job;
