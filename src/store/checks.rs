//! Check scheduling and results: which organizations are due, what a check needs to know
//! about each, and the check history and current status it writes.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use sqlx::types::Json;
use uuid::Uuid;

/// Everything a check needs about one organization, in one row.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TargetRow {
    pub id: crate::domain::OrganizationId,
    pub name: String,
    pub tenant_id: Uuid,
    pub client_id: Uuid,
    pub cloud: String,
    pub sharepoint_host: Option<String>,
    pub labels: Json<BTreeMap<String, String>>,
    pub settings: Json<crate::domain::OrganizationSettings>,
    pub credential_id: Option<crate::domain::CredentialId>,
    pub key_id: Option<Uuid>,
    pub hint: Option<String>,
    pub end_at: Option<DateTime<Utc>>,
    /// The current secret's start, when known (for the rotation plan).
    pub start_at: Option<DateTime<Utc>>,
    pub secret_sealed: Option<Vec<u8>>,
    pub secret_key_id: Option<String>,
    /// The current credential's kind, and for a certificate its DER.
    pub credential_kind: Option<crate::domain::CredentialKind>,
    pub certificate: Option<Vec<u8>>,
    pub thumbprint: Option<String>,
    pub known_key_ids: Vec<Uuid>,
    pub state: crate::domain::State,
    pub last_known_state: Option<crate::domain::State>,
    pub failing_since: Option<DateTime<Utc>>,
    /// The longest secret lifetime the tenant's policy accepted, when it refused longer.
    pub secret_lifetime_limit_days: Option<i32>,
    /// The unfinished rotation's last failure, if its last attempt failed.
    pub rotation_failure: Option<String>,
    pub rotation_error: Option<String>,
    pub rotation_attempts: Option<i32>,
    pub rotation_failing_since: Option<DateTime<Utc>>,
}

const TARGET_SELECT: &str = "SELECT o.id, o.name, o.tenant_id, o.client_id, o.cloud, o.sharepoint_host, o.labels, o.settings,
        c.id AS credential_id, c.key_id, c.hint, c.end_at, c.start_at, c.secret_sealed, c.secret_key_id,
        c.kind AS credential_kind, c.certificate, c.thumbprint,
        COALESCE((SELECT array_agg(k.key_id) FROM credentials k
                  WHERE k.organization_id = o.id AND k.key_id IS NOT NULL AND k.status <> 'removed'), '{}') AS known_key_ids,
        s.state, s.last_known_state, s.failing_since, o.secret_lifetime_limit_days,
        r.failure_reason AS rotation_failure, r.last_error AS rotation_error,
        r.attempts AS rotation_attempts, r.failing_since AS rotation_failing_since
    FROM organizations o
    JOIN organization_status s ON s.organization_id = o.id
    LEFT JOIN credentials c ON c.organization_id = o.id AND c.status = 'current'
    LEFT JOIN rotations r ON r.organization_id = o.id AND r.finished_at IS NULL";

/// Claims up to `limit` enabled organizations whose check is due, pushing their next
/// check `lease` ahead so that no other pickup (or daemon) takes them meanwhile.
pub async fn claim_due(
    connection: &mut PgConnection,
    now: DateTime<Utc>,
    lease_until: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<crate::domain::OrganizationId>, sqlx::Error> {
    super::count_statements(1);
    sqlx::query_scalar(
        "UPDATE organization_status SET next_check_at = $2
         WHERE organization_id IN (
             SELECT s.organization_id FROM organization_status s
             JOIN organizations o ON o.id = s.organization_id
             WHERE o.enabled AND (s.next_check_at IS NULL OR s.next_check_at <= $1)
             ORDER BY s.next_check_at NULLS FIRST
             LIMIT $3
             FOR UPDATE OF s SKIP LOCKED)
         RETURNING organization_id",
    )
    .bind(now)
    .bind(lease_until)
    .bind(limit)
    .fetch_all(connection)
    .await
}

pub async fn targets(
    connection: &mut PgConnection,
    ids: &[crate::domain::OrganizationId],
) -> Result<Vec<TargetRow>, sqlx::Error> {
    super::count_statements(1);
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "{TARGET_SELECT} WHERE o.id = ANY($1) ORDER BY o.name"
    )))
    .bind(ids)
    .fetch_all(connection)
    .await
}

/// Every enabled organization's id.
pub async fn enabled_ids(
    connection: &mut PgConnection,
) -> Result<Vec<crate::domain::OrganizationId>, sqlx::Error> {
    sqlx::query_scalar("SELECT id FROM organizations WHERE enabled ORDER BY name")
        .fetch_all(connection)
        .await
}

pub struct CheckRecord {
    pub organization_id: crate::domain::OrganizationId,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub state: crate::domain::State,
    pub findings: serde_json::Value,
    pub observations: serde_json::Value,
}

pub struct StatusUpdate {
    pub organization_id: crate::domain::OrganizationId,
    pub last_known_state: Option<crate::domain::State>,
    pub checked_at: DateTime<Utc>,
    /// `None` when the check failed to complete.
    pub succeeded_at: Option<DateTime<Utc>>,
    pub failing_since: Option<DateTime<Utc>>,
    pub next_check_at: DateTime<Utc>,
}

/// What a check learned about the current secret from Microsoft.
pub struct LearnedSecret {
    pub credential_id: crate::domain::CredentialId,
    pub key_id: Option<Uuid>,
    pub end_at: Option<DateTime<Utc>>,
}

/// Stores a check, the organization's new status and what was learned of its secret, in
/// one statement, and returns the organization's firing alerts (locked until the
/// transaction ends). The transaction commits asynchronously: a check result lost in a
/// database crash is re-established by the next check, together with its alerts, so
/// these commits need not wait for the disk.
pub async fn record(
    connection: &mut PgConnection,
    check: CheckRecord,
    status: StatusUpdate,
    learned: Option<LearnedSecret>,
) -> Result<Vec<super::alerts::FiringRow>, sqlx::Error> {
    super::count_statements(1);
    sqlx::query_as(
        "WITH relaxed AS (
             SELECT set_config('synchronous_commit', 'off', true)
         ), recorded AS (
             INSERT INTO checks (organization_id, started_at, finished_at, state, findings, observations)
             VALUES ($1, $2, $3, $4, $5::json, $6::json)
             RETURNING id
         ), learned AS (
             UPDATE credentials SET key_id = COALESCE(key_id, $14), end_at = COALESCE($15, end_at)
             WHERE id = $13
         ), status AS (
             UPDATE organization_status SET
                 state_since = CASE WHEN state = $4 THEN state_since ELSE $8 END,
                 state = $4,
                 last_known_state = $7,
                 last_check_id = (SELECT id FROM recorded),
                 last_check_at = $8,
                 last_success_at = COALESCE($9, last_success_at),
                 failing_since = $10,
                 next_check_at = $11
             WHERE organization_id = $12
             RETURNING organization_id
         )
         SELECT a.id, a.kind, a.started_at, a.labels, a.annotations, a.severity
         FROM relaxed, status
         JOIN alerts a ON a.organization_id = status.organization_id AND a.status = 'firing'",
    )
    .bind(check.organization_id)
    .bind(check.started_at)
    .bind(check.finished_at)
    .bind(check.state)
    // As text: the columns are json, and a jsonb parameter would be parsed for nothing.
    .bind(check.findings.to_string())
    .bind(check.observations.to_string())
    .bind(status.last_known_state)
    .bind(status.checked_at)
    .bind(status.succeeded_at)
    .bind(status.failing_since)
    .bind(status.next_check_at)
    .bind(status.organization_id)
    .bind(learned.as_ref().map(|l| l.credential_id))
    .bind(learned.as_ref().and_then(|l| l.key_id))
    .bind(learned.as_ref().and_then(|l| l.end_at))
    .fetch_all(connection)
    .await
}

#[derive(Debug, Clone, sqlx::FromRow, serde::Serialize)]
pub struct StatusRow {
    pub name: String,
    pub enabled: bool,
    pub state: crate::domain::State,
    pub state_since: DateTime<Utc>,
    pub last_known_state: Option<crate::domain::State>,
    pub last_check_at: Option<DateTime<Utc>>,
    pub last_success_at: Option<DateTime<Utc>>,
    pub secret_expires_at: Option<DateTime<Utc>>,
    pub silenced_until: Option<DateTime<Utc>>,
    pub findings: serde_json::Value,
}

/// Every organization's status, for `status` and the metrics.
pub async fn statuses(connection: &mut PgConnection) -> Result<Vec<StatusRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT o.name, o.enabled, s.state, s.state_since, s.last_known_state, s.last_check_at,
                s.last_success_at, c.end_at AS secret_expires_at, s.silenced_until,
                COALESCE(k.findings, '[]'::json) AS findings
         FROM organizations o
         JOIN organization_status s ON s.organization_id = o.id
         LEFT JOIN credentials c ON c.organization_id = o.id AND c.status = 'current'
         LEFT JOIN checks k ON k.id = s.last_check_id
         ORDER BY o.name",
    )
    .fetch_all(connection)
    .await
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct GaugeRow {
    pub name: String,
    pub enabled: bool,
    pub state: crate::domain::State,
    pub secret_expires_at: Option<DateTime<Utc>>,
    pub last_success_at: Option<DateTime<Utc>>,
    pub settings: Json<crate::domain::OrganizationSettings>,
    /// The current secret's start (or when kodo-access first held it), for the rotation plan.
    pub secret_start_at: Option<DateTime<Utc>>,
    /// When the unfinished rotation tries again, if there is one.
    pub rotation_next_attempt_at: Option<DateTime<Utc>>,
}

/// What the metrics show of every organization (no findings: scrapes stay cheap).
pub async fn gauges(connection: &mut PgConnection) -> Result<Vec<GaugeRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT o.name, o.enabled, s.state, c.end_at AS secret_expires_at, s.last_success_at, o.settings,
                c.start_at AS secret_start_at,
                r.next_attempt_at AS rotation_next_attempt_at
         FROM organizations o
         JOIN organization_status s ON s.organization_id = o.id
         LEFT JOIN credentials c ON c.organization_id = o.id AND c.status = 'current'
         LEFT JOIN rotations r ON r.organization_id = o.id AND r.finished_at IS NULL",
    )
    .fetch_all(connection)
    .await
}

pub async fn silence(
    connection: &mut PgConnection,
    organization_id: crate::domain::OrganizationId,
    until: Option<DateTime<Utc>>,
    reason: Option<&str>,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE organization_status SET silenced_until = $2, silence_reason = $3 WHERE organization_id = $1")
        .bind(organization_id)
        .bind(until)
        .bind(reason)
        .execute(connection)
        .await
        .map(|_| ())
}

/// Makes the organization due for a check now.
/// Leases the given organizations' next check to this process (as `claim_due` does for
/// the due ones), so that no daemon checks them meanwhile.
pub async fn claim(
    connection: &mut PgConnection,
    ids: &[crate::domain::OrganizationId],
    lease_until: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE organization_status SET next_check_at = $2 WHERE organization_id = ANY($1)")
        .bind(ids)
        .bind(lease_until)
        .execute(connection)
        .await
        .map(|_| ())
}

/// The organization's current credential, held (`FOR SHARE`) until the transaction ends so
/// that no rotation makes another one current meanwhile.
pub async fn current_credential(
    connection: &mut PgConnection,
    organization_id: crate::domain::OrganizationId,
) -> Result<Option<crate::domain::CredentialId>, sqlx::Error> {
    super::count_statements(1);
    sqlx::query_scalar(
        "SELECT id FROM credentials WHERE organization_id = $1 AND status = 'current' FOR SHARE",
    )
    .bind(organization_id)
    .fetch_optional(connection)
    .await
}

pub async fn check_soon(
    connection: &mut PgConnection,
    organization_id: crate::domain::OrganizationId,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE organization_status SET next_check_at = now() WHERE organization_id = $1")
        .bind(organization_id)
        .execute(connection)
        .await
        .map(|_| ())
}
