-- A certificate made ahead of its rotation (rotation.prepare_ahead) is a pending
-- credential that no rotation has taken yet: at most one per organization, even when
-- several daemons make them at once.
CREATE UNIQUE INDEX credentials_one_spare ON credentials (organization_id)
    WHERE status = 'pending' AND rotation_id IS NULL AND kind = 'certificate';
