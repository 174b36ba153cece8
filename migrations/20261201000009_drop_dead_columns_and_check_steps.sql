-- Columns nothing reads any more (issue 11):
-- - organization_status.findings: the findings are those of the last check (last_check_id);
-- - organization_status.consecutive_failures: written on every check, never read
--   (failing_since says how long checks have failed);
-- - organization_status.pending_state/pending_count: confirmation of a "gone" state is a
--   second look within the same check run, never stored;
-- - rotations.lease_owner/lease_until/fencing_token: the lock is a PostgreSQL advisory
--   lock, fenced before every call to Microsoft.
ALTER TABLE organization_status
    DROP COLUMN findings,
    DROP COLUMN consecutive_failures,
    DROP COLUMN pending_state,
    DROP COLUMN pending_count;
ALTER TABLE rotations
    DROP COLUMN lease_owner,
    DROP COLUMN lease_until,
    DROP COLUMN fencing_token;

-- A rotation's step is one of the journal's steps (the code's `RotationStep`).
ALTER TABLE rotations ADD CONSTRAINT rotations_step CHECK (
    step IN ('intent', 'added', 'verified', 'delivered', 'activated', 'finished')
);
