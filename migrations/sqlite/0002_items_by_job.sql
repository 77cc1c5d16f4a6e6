-- Items of one job in file order (listing without a status filter, exports): an index
-- on job_id alone is ordered by (job_id, rowid), so these reads need no sort.
CREATE INDEX accounts_job ON accounts (job_id);
CREATE INDEX preprocessing_results_job ON preprocessing_results (job_id);
