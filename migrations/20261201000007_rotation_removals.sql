-- Write-ahead record of a removal at Microsoft: the keyId a rotation is about to remove
-- (the replaced secret, or one its lost answers left behind), set before removePassword and
-- cleared once the removal is recorded. A secret is stored as a rotation's new one only
-- while no removal of it is journaled, so a daemon that lost its lock while storing cannot
-- adopt a secret another daemon is removing.
ALTER TABLE rotations ADD COLUMN removing_key_id uuid;
