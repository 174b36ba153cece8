-- The check history and the current findings are written on every check and only ever
-- read back whole: plain json (validated text) costs PostgreSQL far less to write than
-- jsonb (parsed into a binary form), measured with `kodo-access bench sweep`.
ALTER TABLE checks ALTER COLUMN findings DROP DEFAULT;
ALTER TABLE checks ALTER COLUMN findings TYPE json USING findings::json;
ALTER TABLE checks ALTER COLUMN findings SET DEFAULT '[]'::json;
ALTER TABLE checks ALTER COLUMN observations DROP DEFAULT;
ALTER TABLE checks ALTER COLUMN observations TYPE json USING observations::json;
ALTER TABLE checks ALTER COLUMN observations SET DEFAULT '{}'::json;
ALTER TABLE organization_status ALTER COLUMN findings DROP DEFAULT;
ALTER TABLE organization_status ALTER COLUMN findings TYPE json USING findings::json;
ALTER TABLE organization_status ALTER COLUMN findings SET DEFAULT '[]'::json;
