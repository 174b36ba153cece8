-- An organization's current findings are those of its last check: point at it instead of
-- writing the same JSON twice on every check. organization_status.findings is no longer
-- written (kept, empty, so that this migration removes nothing).
ALTER TABLE organization_status ADD COLUMN last_check_id bigint REFERENCES checks (id) ON DELETE SET NULL;
-- Pruning old checks (housekeeping) looks up what points at them.
CREATE INDEX organization_status_last_check ON organization_status (last_check_id);
