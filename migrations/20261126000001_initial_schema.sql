-- kodo-access: the initial schema.
-- Applied migrations are never edited; later changes come as new files.
-- Secrets appear only as sealed bytes (credentials.secret_sealed), never as text.

-- One customer tenant and the app registration the backup server uses in it.
CREATE TABLE organizations (
    id               uuid PRIMARY KEY,
    name             text NOT NULL UNIQUE,
    tenant_id        uuid NOT NULL,
    client_id        uuid NOT NULL,
    cloud            text NOT NULL DEFAULT 'global',
    sharepoint_host  text,
    labels           jsonb NOT NULL DEFAULT '{}'::jsonb,
    enabled          boolean NOT NULL DEFAULT true,
    -- Per-organization overrides of check/rotation settings (used by later features).
    settings         jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT organizations_tenant_client_key UNIQUE (tenant_id, client_id)
);

-- Client secrets, current and past. Microsoft's identity of a secret is its keyId;
-- hint is the first three characters Microsoft itself shows.
CREATE TABLE credentials (
    id               uuid PRIMARY KEY,
    organization_id  uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    key_id           uuid,
    hint             text,
    display_name     text,
    start_at         timestamptz,
    end_at           timestamptz,
    -- operator: entered by hand (org add / set-secret / import); rotation: created by kodo-access
    origin           text NOT NULL CHECK (origin IN ('operator', 'rotation')),
    -- pending: created by a rotation, not yet trusted; current: the one in use;
    -- previous: replaced, still valid in Microsoft until removed; removed: gone from the app;
    -- discarded: never became current (failed rotation) or secret withdrawn by the operator
    status           text NOT NULL CHECK (status IN ('pending', 'current', 'previous', 'removed', 'discarded')),
    rotation_id      uuid,
    secret_sealed    bytea NOT NULL,
    secret_key_id    text NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    activated_at     timestamptz,
    retired_at       timestamptz,
    removed_at       timestamptz
);
CREATE UNIQUE INDEX credentials_one_current ON credentials (organization_id) WHERE status = 'current';
CREATE UNIQUE INDEX credentials_key_id ON credentials (organization_id, key_id) WHERE key_id IS NOT NULL;
CREATE INDEX credentials_seal_key ON credentials (secret_key_id);

-- Each organization's current verdict, one row per organization.
CREATE TABLE organization_status (
    organization_id      uuid PRIMARY KEY REFERENCES organizations (id) ON DELETE CASCADE,
    state                text NOT NULL DEFAULT 'unknown',
    state_since          timestamptz NOT NULL DEFAULT now(),
    -- While checks fail to complete, the last state a completed check established.
    last_known_state     text,
    findings             jsonb NOT NULL DEFAULT '[]'::jsonb,
    last_check_at        timestamptz,
    last_success_at      timestamptz,
    consecutive_failures integer NOT NULL DEFAULT 0,
    -- A state that means "access is gone" waits here for confirmation.
    pending_state        text,
    pending_count        integer NOT NULL DEFAULT 0,
    next_check_at        timestamptz,
    silenced_until       timestamptz,
    silence_reason       text
);

-- Check history, pruned by the housekeeping job.
CREATE TABLE checks (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    organization_id  uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    started_at       timestamptz NOT NULL,
    finished_at      timestamptz NOT NULL,
    state            text NOT NULL,
    findings         jsonb NOT NULL DEFAULT '[]'::jsonb,
    observations     jsonb NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX checks_by_organization ON checks (organization_id, started_at DESC);
CREATE INDEX checks_by_time ON checks (started_at);

-- Alerts: one lifecycle per (organization, kind); at most one firing at a time.
CREATE TABLE alerts (
    id               uuid PRIMARY KEY,
    organization_id  uuid REFERENCES organizations (id) ON DELETE CASCADE,
    kind             text NOT NULL,
    severity         text NOT NULL,
    status           text NOT NULL CHECK (status IN ('firing', 'resolved')),
    labels           jsonb NOT NULL DEFAULT '{}'::jsonb,
    annotations      jsonb NOT NULL DEFAULT '{}'::jsonb,
    started_at       timestamptz NOT NULL DEFAULT now(),
    resolved_at      timestamptz,
    last_sent_at     timestamptz
);
CREATE UNIQUE INDEX alerts_one_firing ON alerts (organization_id, kind) WHERE status = 'firing';

-- Notifications waiting for (or done with) delivery to each sink.
CREATE TABLE alert_outbox (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    alert_id         uuid NOT NULL REFERENCES alerts (id) ON DELETE CASCADE,
    sink             text NOT NULL,
    payload          jsonb NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    attempts         integer NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    delivered_at     timestamptz,
    last_error       text
);
CREATE INDEX alert_outbox_due ON alert_outbox (next_attempt_at) WHERE delivered_at IS NULL;
CREATE INDEX alert_outbox_delivered ON alert_outbox (delivered_at) WHERE delivered_at IS NOT NULL;

-- The rotation journal: one row per rotation, its step recorded before each call to Microsoft.
CREATE TABLE rotations (
    id                 uuid PRIMARY KEY,
    organization_id    uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    step               text NOT NULL,
    outcome            text CHECK (outcome IN ('succeeded', 'failed', 'abandoned')),
    reason             text NOT NULL,
    old_credential_id  uuid REFERENCES credentials (id) ON DELETE SET NULL,
    new_credential_id  uuid REFERENCES credentials (id) ON DELETE SET NULL,
    new_key_id         uuid,
    attempts           integer NOT NULL DEFAULT 0,
    last_error         text,
    next_attempt_at    timestamptz NOT NULL DEFAULT now(),
    lease_owner        text,
    lease_until        timestamptz,
    fencing_token      bigint NOT NULL DEFAULT 0,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    finished_at        timestamptz
);
CREATE UNIQUE INDEX rotations_one_open ON rotations (organization_id) WHERE finished_at IS NULL;

-- Every change to an organization or a credential. No foreign key: the record of an
-- organization outlives the organization. Never holds a secret.
CREATE TABLE audit_log (
    id                 bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at                 timestamptz NOT NULL DEFAULT now(),
    actor              text NOT NULL,
    action             text NOT NULL,
    organization_id    uuid,
    organization_name  text,
    credential_id      uuid,
    key_id             uuid,
    rotation_id        uuid,
    details            jsonb NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX audit_log_by_organization ON audit_log (organization_id, at DESC);

-- Runs of periodic jobs (scheduled or by hand), for `job list` and the metrics.
CREATE TABLE job_runs (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job          text NOT NULL,
    trigger      text NOT NULL CHECK (trigger IN ('schedule', 'manual')),
    started_at   timestamptz NOT NULL DEFAULT now(),
    finished_at  timestamptz,
    outcome      text CHECK (outcome IN ('succeeded', 'failed')),
    summary      text
);
CREATE INDEX job_runs_by_job ON job_runs (job, started_at DESC);
