-- Findings and observations are JSON of a few kilobytes written on every check: lz4
-- compresses them at a fraction of pglz's CPU cost (PostgreSQL 14+).
ALTER TABLE checks ALTER COLUMN findings SET COMPRESSION lz4;
ALTER TABLE checks ALTER COLUMN observations SET COMPRESSION lz4;
ALTER TABLE organization_status ALTER COLUMN findings SET COMPRESSION lz4;
