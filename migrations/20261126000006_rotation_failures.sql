-- Why a rotation's last attempt failed (not_authorized, secrets_not_allowed, lifetime_policy,
-- access_lost, not_verified, delivery_failed, microsoft_unavailable, failed), for the
-- checks that turn it into an alert with what to do.
ALTER TABLE rotations ADD COLUMN failure_reason text;
ALTER TABLE rotations ADD COLUMN failing_since timestamptz;
-- The longest secret lifetime the tenant's app-management policy accepted, learned when it
-- refused a longer one (CredentialInvalidLifetimeAsPerAppPolicy); later rotations ask for
-- no more.
ALTER TABLE organizations ADD COLUMN secret_lifetime_limit_days integer;
