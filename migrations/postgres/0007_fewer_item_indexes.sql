-- Every index on an items table is written for each imported row and, as a claim or a
-- finish changes an item's status, for each of those too. The partial indexes of
-- pending and of processing items order nothing that (job_id, status, id) does not:
-- a claim's pending items in id order, a cancel's items in flight. Dropped, an import
-- writes three index entries a row instead of four, and a claim one fewer.
DROP INDEX IF EXISTS accounts_pending;
DROP INDEX IF EXISTS accounts_processing;
DROP INDEX IF EXISTS preprocessing_results_pending;
DROP INDEX IF EXISTS preprocessing_results_processing;
