-- Checks and alerts: when an organization's checks began failing, and the index the
-- check scheduler reads.
ALTER TABLE organization_status ADD COLUMN failing_since timestamptz;
CREATE INDEX organization_status_due ON organization_status (next_check_at);
CREATE INDEX alerts_firing ON alerts (status) WHERE status = 'firing';
