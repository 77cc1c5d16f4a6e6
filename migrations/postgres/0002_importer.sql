-- The worker importing a hidden job. Another server starting up must not remove an
-- import that is still going on elsewhere: only one whose importer is gone (a crash)
-- is turned into a delete.
ALTER TABLE processing_jobs ADD COLUMN importer BIGINT;
ALTER TABLE preprocessing_jobs ADD COLUMN importer BIGINT;
