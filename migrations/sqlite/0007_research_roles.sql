-- A research job's items keep their input row once. `roles` (JSON: the input column
-- index of the company name, website, domain and e-mail, each or null) is fixed when
-- the job is created, and its items' `name`, `website` and `domain` are read from the
-- input cells it names instead of being stored a second time beside them: a
-- million-row import wrote about 56 bytes per row twice. Jobs created before keep
-- NULL here, and their items carry the three values themselves. Preprocessing items
-- store cleaned values, which differ from their input, so that table keeps them.
ALTER TABLE processing_jobs ADD COLUMN roles TEXT;
ALTER TABLE preprocessing_jobs ADD COLUMN roles TEXT;
