//! The rotation journal (`rotations`) and the credential changes a rotation makes. Every
//! step is recorded before the call to Microsoft that follows it.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::crypto::Sealed;
use crate::domain::RotationStep;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RotationRow {
    pub id: crate::domain::RotationId,
    pub organization_id: crate::domain::OrganizationId,
    #[sqlx(try_from = "String")]
    pub step: RotationStep,
    pub old_credential_id: Option<crate::domain::CredentialId>,
    pub new_credential_id: Option<crate::domain::CredentialId>,
    pub new_key_id: Option<Uuid>,
    pub attempts: i32,
    pub next_attempt_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    /// A removal at Microsoft journaled and not yet recorded as done.
    pub removing_key_id: Option<Uuid>,
}

const COLUMNS: &str = "id, organization_id, step, old_credential_id, new_credential_id, new_key_id, attempts, next_attempt_at, created_at, finished_at, removing_key_id";

/// The organization's unfinished rotation, if any.
pub async fn open(
    connection: &mut PgConnection,
    organization_id: crate::domain::OrganizationId,
) -> Result<Option<RotationRow>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM rotations WHERE organization_id = $1 AND finished_at IS NULL"
    )))
    .bind(organization_id)
    .fetch_optional(connection)
    .await
}

/// Records the intent to rotate, before anything is asked of Microsoft.
pub async fn begin(
    connection: &mut PgConnection,
    id: crate::domain::RotationId,
    organization_id: crate::domain::OrganizationId,
    old_credential_id: Option<crate::domain::CredentialId>,
    reason: &str,
) -> Result<RotationRow, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "INSERT INTO rotations (id, organization_id, step, reason, old_credential_id)
         VALUES ($1, $2, 'intent', $3, $4) RETURNING {COLUMNS}"
    )))
    .bind(id)
    .bind(organization_id)
    .bind(reason)
    .bind(old_credential_id)
    .fetch_one(connection)
    .await
}

pub async fn set_step(
    connection: &mut PgConnection,
    id: crate::domain::RotationId,
    step: RotationStep,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE rotations SET step = $2, updated_at = now(), last_error = NULL, failure_reason = NULL,
                              failing_since = NULL
         WHERE id = $1",
    )
    .bind(id)
    .bind(step.as_str())
    .execute(connection)
    .await
    .map(|_| ())
}

/// The rotation by id.
pub async fn by_id(
    connection: &mut PgConnection,
    id: crate::domain::RotationId,
) -> Result<RotationRow, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM rotations WHERE id = $1"
    )))
    .bind(id)
    .fetch_one(connection)
    .await
}

/// Puts off the next attempt of a rotation at `added` while this process verifies its new
/// secret, so that other daemons leave it alone. False when the rotation moved on.
pub async fn claim_for_verification(
    connection: &mut PgConnection,
    id: crate::domain::RotationId,
    claim: std::time::Duration,
) -> Result<bool, sqlx::Error> {
    sqlx::query(
        "UPDATE rotations SET next_attempt_at = now() + make_interval(secs => $2), updated_at = now()
         WHERE id = $1 AND step = 'added' AND finished_at IS NULL",
    )
    .bind(id)
    .bind(claim.as_secs_f64())
    .execute(connection)
    .await
    .map(|done| done.rows_affected() == 1)
}

/// Moves the rotation from step `from` to `to`; false when it was no longer at `from`.
pub async fn advance(
    connection: &mut PgConnection,
    id: crate::domain::RotationId,
    from: RotationStep,
    to: RotationStep,
) -> Result<bool, sqlx::Error> {
    sqlx::query(
        "UPDATE rotations SET step = $3, next_attempt_at = now(), updated_at = now(), last_error = NULL,
                              failure_reason = NULL, failing_since = NULL
         WHERE id = $1 AND step = $2",
    )
    .bind(id)
    .bind(from.as_str())
    .bind(to.as_str())
    .execute(connection)
    .await
    .map(|done| done.rows_affected() == 1)
}

/// A failed step: the rotation waits until `next_attempt_at` and stays at its step.
/// With `at_step`, only while the rotation is still at that step.
pub async fn failed(
    connection: &mut PgConnection,
    id: crate::domain::RotationId,
    at_step: Option<RotationStep>,
    reason: &str,
    error: &str,
    next_attempt_at: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE rotations SET attempts = attempts + 1, failure_reason = $2, last_error = $3,
                              failing_since = COALESCE(failing_since, now()),
                              next_attempt_at = $4, updated_at = now()
         WHERE id = $1 AND ($5::text IS NULL OR step = $5)",
    )
    .bind(id)
    .bind(reason)
    .bind(error)
    .bind(next_attempt_at)
    .bind(at_step.map(RotationStep::as_str))
    .execute(connection)
    .await
    .map(|_| ())
}

/// Ends the rotation from step `from`; false when it was no longer there.
pub async fn finish(
    connection: &mut PgConnection,
    id: crate::domain::RotationId,
    from: RotationStep,
    outcome: &str,
) -> Result<bool, sqlx::Error> {
    sqlx::query(
        "UPDATE rotations SET step = 'finished', outcome = $3, finished_at = now(), updated_at = now(),
                              removing_key_id = NULL
         WHERE id = $1 AND step = $2 AND finished_at IS NULL",
    )
    .bind(id)
    .bind(from.as_str())
    .bind(outcome)
    .execute(connection)
    .await
    .map(|done| done.rows_affected() == 1)
}

pub struct NewSecret<'a> {
    pub rotation_id: crate::domain::RotationId,
    pub credential_id: crate::domain::CredentialId,
    pub organization_id: crate::domain::OrganizationId,
    pub key_id: Uuid,
    pub hint: Option<&'a str>,
    pub display_name: Option<&'a str>,
    pub start_at: Option<DateTime<Utc>>,
    pub end_at: Option<DateTime<Utc>>,
    pub sealed: &'a Sealed,
}

/// Stores the secret Microsoft just created (pending) and moves the rotation to `added`,
/// only while the rotation is still at `intent` and no removal of this key is journaled.
/// False (nothing stored) when the rotation moved on without it.
pub async fn added(
    connection: &mut PgConnection,
    secret: NewSecret<'_>,
) -> Result<bool, sqlx::Error> {
    sqlx::query(
        "WITH moved AS (
             UPDATE rotations SET step = 'added', new_credential_id = $2, new_key_id = $4, updated_at = now(),
                                  next_attempt_at = now(), last_error = NULL, failure_reason = NULL,
                                  failing_since = NULL
             WHERE id = $1 AND step = 'intent' AND finished_at IS NULL
               AND removing_key_id IS DISTINCT FROM $4
             RETURNING id
         )
         INSERT INTO credentials (id, organization_id, key_id, hint, display_name, start_at, end_at,
                                  origin, status, rotation_id, secret_sealed, secret_key_id)
         SELECT $2, $3, $4, $5, $6, $7, $8, 'rotation', 'pending', $1, $9, $10 FROM moved",
    )
    .bind(secret.rotation_id)
    .bind(secret.credential_id)
    .bind(secret.organization_id)
    .bind(secret.key_id)
    .bind(secret.hint)
    .bind(secret.display_name)
    .bind(secret.start_at)
    .bind(secret.end_at)
    .bind(&secret.sealed.blob)
    .bind(&secret.sealed.key_id)
    .execute(connection)
    .await
    .map(|done| done.rows_affected() == 1)
}

pub struct NewCertificate<'a> {
    /// The rotation it is made for; none for a spare made ahead.
    pub rotation_id: Option<crate::domain::RotationId>,
    pub credential_id: crate::domain::CredentialId,
    pub organization_id: crate::domain::OrganizationId,
    pub display_name: &'a str,
    pub der: &'a [u8],
    pub thumbprint: &'a str,
    pub start_at: DateTime<Utc>,
    pub end_at: DateTime<Utc>,
    /// The sealed private key.
    pub sealed: &'a Sealed,
}

/// Stores the certificate a rotation generated (pending, its key sealed) as the rotation's
/// new credential before anything is asked of Microsoft, so that whatever happens next it
/// is found again by thumbprint. Only at `intent` and only once; false otherwise.
pub async fn prepared(
    connection: &mut PgConnection,
    certificate: NewCertificate<'_>,
) -> Result<bool, sqlx::Error> {
    sqlx::query(
        "WITH moved AS (
             UPDATE rotations SET new_credential_id = $2, updated_at = now()
             WHERE id = $1 AND step = 'intent' AND finished_at IS NULL AND new_credential_id IS NULL
             RETURNING id
         )
         INSERT INTO credentials (id, organization_id, display_name, start_at, end_at, origin,
                                  status, rotation_id, secret_sealed, secret_key_id, kind,
                                  certificate, thumbprint)
         SELECT $2, $3, $4, $5, $6, 'rotation', 'pending', $1, $7, $8, 'certificate', $9, $10
         FROM moved",
    )
    .bind(certificate.rotation_id)
    .bind(certificate.credential_id)
    .bind(certificate.organization_id)
    .bind(certificate.display_name)
    .bind(certificate.start_at)
    .bind(certificate.end_at)
    .bind(&certificate.sealed.blob)
    .bind(&certificate.sealed.key_id)
    .bind(certificate.der)
    .bind(certificate.thumbprint)
    .execute(connection)
    .await
    .map(|done| done.rows_affected() == 1)
}

/// A certificate made ahead of its rotation (the key pair costs a rotation most of its
/// CPU, so it is made in the quiet hours before the rotation is due): pending, sealed,
/// attached to no rotation yet. At most one per organization; false when there is one.
pub async fn store_spare(
    connection: &mut PgConnection,
    certificate: NewCertificate<'_>,
) -> Result<bool, sqlx::Error> {
    sqlx::query(
        "INSERT INTO credentials (id, organization_id, display_name, start_at, end_at, origin,
                                  status, rotation_id, secret_sealed, secret_key_id, kind,
                                  certificate, thumbprint)
         VALUES ($1, $2, $3, $4, $5, 'rotation', 'pending', NULL, $6, $7, 'certificate', $8, $9)
         ON CONFLICT (organization_id) WHERE status = 'pending' AND rotation_id IS NULL
                                         AND kind = 'certificate' DO NOTHING",
    )
    .bind(certificate.credential_id)
    .bind(certificate.organization_id)
    .bind(certificate.display_name)
    .bind(certificate.start_at)
    .bind(certificate.end_at)
    .bind(&certificate.sealed.blob)
    .bind(&certificate.sealed.key_id)
    .bind(certificate.der)
    .bind(certificate.thumbprint)
    .execute(connection)
    .await
    .map(|done| done.rows_affected() == 1)
}

/// The organization's spare certificate: (credential id, start, end).
pub async fn spare(
    connection: &mut PgConnection,
    organization_id: crate::domain::OrganizationId,
) -> Result<Option<(crate::domain::CredentialId, DateTime<Utc>, DateTime<Utc>)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, start_at, end_at FROM credentials
         WHERE organization_id = $1 AND status = 'pending' AND rotation_id IS NULL
           AND kind = 'certificate' AND start_at IS NOT NULL AND end_at IS NOT NULL",
    )
    .bind(organization_id)
    .fetch_optional(connection)
    .await
}

/// The spare certificate becomes the rotation's new credential, as `prepared` would
/// store one. Only at `intent`, only once; false otherwise.
pub async fn adopt_spare(
    connection: &mut PgConnection,
    rotation_id: crate::domain::RotationId,
    credential_id: crate::domain::CredentialId,
    display_name: &str,
) -> Result<bool, sqlx::Error> {
    sqlx::query(
        "WITH moved AS (
             UPDATE rotations SET new_credential_id = $2, updated_at = now()
             WHERE id = $1 AND step = 'intent' AND finished_at IS NULL AND new_credential_id IS NULL
               AND EXISTS (SELECT 1 FROM credentials
                           WHERE id = $2 AND status = 'pending' AND rotation_id IS NULL)
             RETURNING id
         )
         UPDATE credentials SET rotation_id = $1, display_name = $3
         WHERE id = $2 AND EXISTS (SELECT 1 FROM moved)",
    )
    .bind(rotation_id)
    .bind(credential_id)
    .bind(display_name)
    .execute(connection)
    .await
    .map(|done| done.rows_affected() == 1)
}

/// A spare certificate no longer fit for use (too old, or longer-lived than the tenant
/// now allows) is discarded.
pub async fn discard_spare(
    connection: &mut PgConnection,
    credential_id: crate::domain::CredentialId,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE credentials SET status = 'discarded'
         WHERE id = $1 AND status = 'pending' AND rotation_id IS NULL",
    )
    .bind(credential_id)
    .execute(connection)
    .await
    .map(|_| ())
}

/// The prepared certificate was refused (the tenant allows a shorter life): it is
/// discarded and the rotation, still at `intent`, prepares another. False when it moved on.
pub async fn discard_prepared(
    connection: &mut PgConnection,
    rotation_id: crate::domain::RotationId,
    credential_id: crate::domain::CredentialId,
) -> Result<bool, sqlx::Error> {
    sqlx::query(
        "WITH moved AS (
             UPDATE rotations SET new_credential_id = NULL, updated_at = now()
             WHERE id = $1 AND step = 'intent' AND finished_at IS NULL AND new_credential_id = $2
             RETURNING id
         )
         UPDATE credentials SET status = 'discarded'
         WHERE id = $2 AND status = 'pending' AND EXISTS (SELECT 1 FROM moved)",
    )
    .bind(rotation_id)
    .bind(credential_id)
    .execute(connection)
    .await
    .map(|done| done.rows_affected() == 1)
}

/// The prepared certificate is on the application (Microsoft's `keyId` known): the
/// rotation moves to `added`. Only from `intent`; false when it moved on.
pub async fn certificate_added(
    connection: &mut PgConnection,
    rotation_id: crate::domain::RotationId,
    credential_id: crate::domain::CredentialId,
    key_id: Uuid,
) -> Result<bool, sqlx::Error> {
    sqlx::query(
        "WITH moved AS (
             UPDATE rotations SET step = 'added', new_key_id = $3, updated_at = now(),
                                  next_attempt_at = now(), last_error = NULL, failure_reason = NULL,
                                  failing_since = NULL
             WHERE id = $1 AND step = 'intent' AND finished_at IS NULL AND new_credential_id = $2
             RETURNING id
         )
         UPDATE credentials SET key_id = $3 WHERE id = $2 AND EXISTS (SELECT 1 FROM moved)",
    )
    .bind(rotation_id)
    .bind(credential_id)
    .bind(key_id)
    .execute(connection)
    .await
    .map(|done| done.rows_affected() == 1)
}

/// Makes the rotation's new secret the current one; the replaced one becomes previous.
/// Only from step `delivered`; false (nothing changed) when the rotation is elsewhere.
pub async fn activate(
    connection: &mut PgConnection,
    rotation_id: crate::domain::RotationId,
    organization_id: crate::domain::OrganizationId,
    new_credential_id: crate::domain::CredentialId,
    grace: std::time::Duration,
) -> Result<bool, sqlx::Error> {
    let at_delivered: Option<crate::domain::RotationId> = sqlx::query_scalar(
        "SELECT id FROM rotations WHERE id = $1 AND step = 'delivered' AND finished_at IS NULL FOR UPDATE",
    )
    .bind(rotation_id)
    .fetch_optional(&mut *connection)
    .await?;
    if at_delivered.is_none() {
        return Ok(false);
    }
    sqlx::query(
        "UPDATE credentials SET status = 'previous', retired_at = now()
         WHERE organization_id = $1 AND status = 'current'",
    )
    .bind(organization_id)
    .execute(&mut *connection)
    .await?;
    sqlx::query("UPDATE credentials SET status = 'current', activated_at = now() WHERE id = $1")
        .bind(new_credential_id)
        .execute(&mut *connection)
        .await?;
    set_step(connection, rotation_id, RotationStep::Activated).await?;
    // Nothing to do until the grace period is over.
    sqlx::query(
        "UPDATE rotations SET next_attempt_at = now() + make_interval(secs => $2) WHERE id = $1",
    )
    .bind(rotation_id)
    .bind(grace.as_secs_f64())
    .execute(connection)
    .await
    .map(|_| true)
}

/// Journals, before the call to Microsoft, that `key_id` is about to be removed: only while
/// the rotation is still at `step`. False when it moved on.
pub async fn removing(
    connection: &mut PgConnection,
    id: crate::domain::RotationId,
    step: RotationStep,
    key_id: Uuid,
) -> Result<bool, sqlx::Error> {
    sqlx::query(
        "UPDATE rotations SET removing_key_id = $3, updated_at = now()
         WHERE id = $1 AND step = $2 AND finished_at IS NULL",
    )
    .bind(id)
    .bind(step.as_str())
    .bind(key_id)
    .execute(connection)
    .await
    .map(|done| done.rows_affected() == 1)
}

/// The journaled removal is done (and recorded in the same transaction).
pub async fn removed(
    connection: &mut PgConnection,
    id: crate::domain::RotationId,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE rotations SET removing_key_id = NULL, updated_at = now() WHERE id = $1")
        .bind(id)
        .execute(connection)
        .await
        .map(|_| ())
}

/// A check saw the cause of the rotation's last failure gone (consent back, the rotation
/// permission granted): the rotation tries again now instead of after its backoff.
pub async fn retry_soon(
    connection: &mut PgConnection,
    organization_id: crate::domain::OrganizationId,
    reasons: &[&str],
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE rotations SET next_attempt_at = now(), updated_at = now()
         WHERE organization_id = $1 AND finished_at IS NULL AND failure_reason = ANY($2)
           AND next_attempt_at > now()",
    )
    .bind(organization_id)
    .bind(reasons)
    .execute(connection)
    .await
    .map(|_| ())
}

/// Remembers the longest lifetime the tenant's policy accepted (in days).
pub async fn learn_lifetime_limit(
    connection: &mut PgConnection,
    organization_id: crate::domain::OrganizationId,
    days: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE organizations SET secret_lifetime_limit_days = $2 WHERE id = $1")
        .bind(organization_id)
        .bind(i32::try_from(days).unwrap_or(i32::MAX))
        .execute(connection)
        .await
        .map(|_| ())
}

pub async fn mark_removed(
    connection: &mut PgConnection,
    credential_id: crate::domain::CredentialId,
) -> Result<(), sqlx::Error> {
    // Its ciphertext is wiped with it: a removed secret has no use, kept it is only a risk.
    sqlx::query(
        "UPDATE credentials SET status = 'removed', removed_at = now(), secret_sealed = '\\x'::bytea WHERE id = $1",
    )
        .bind(credential_id)
        .execute(connection)
        .await
        .map(|_| ())
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct CredentialRef {
    pub id: crate::domain::CredentialId,
    pub key_id: Option<Uuid>,
    pub end_at: Option<DateTime<Utc>>,
    pub activated_at: Option<DateTime<Utc>>,
    pub secret_sealed: Vec<u8>,
    pub secret_key_id: String,
    pub kind: crate::domain::CredentialKind,
    /// A certificate's DER and SHA-1 thumbprint.
    pub certificate: Option<Vec<u8>>,
    pub thumbprint: Option<String>,
}

pub async fn credential(
    connection: &mut PgConnection,
    id: crate::domain::CredentialId,
) -> Result<CredentialRef, sqlx::Error> {
    sqlx::query_as("SELECT id, key_id, end_at, activated_at, secret_sealed, secret_key_id, kind, certificate, thumbprint FROM credentials WHERE id = $1")
        .bind(id)
        .fetch_one(connection)
        .await
}

/// An organization the rotation job looks at: its current secret's validity and any
/// unfinished rotation.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Candidate {
    pub organization_id: crate::domain::OrganizationId,
    pub name: String,
    pub settings: sqlx::types::Json<crate::domain::OrganizationSettings>,
    pub start_at: Option<DateTime<Utc>>,
    pub end_at: Option<DateTime<Utc>>,
    pub credential_kind: Option<crate::domain::CredentialKind>,
    pub open_rotation: Option<crate::domain::RotationId>,
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// A certificate is prepared for its next rotation already.
    pub has_spare: bool,
    /// The lifetime the tenant's policy was found to allow, in days.
    pub secret_lifetime_limit_days: Option<i32>,
}

pub async fn candidates(connection: &mut PgConnection) -> Result<Vec<Candidate>, sqlx::Error> {
    sqlx::query_as(
        "SELECT o.id AS organization_id, o.name, o.settings,
                c.start_at, c.end_at, c.kind AS credential_kind,
                r.id AS open_rotation, r.next_attempt_at,
                EXISTS (SELECT 1 FROM credentials s
                        WHERE s.organization_id = o.id AND s.status = 'pending'
                          AND s.rotation_id IS NULL AND s.kind = 'certificate') AS has_spare,
                o.secret_lifetime_limit_days
         FROM organizations o
         LEFT JOIN credentials c ON c.organization_id = o.id AND c.status = 'current'
         LEFT JOIN rotations r ON r.organization_id = o.id AND r.finished_at IS NULL
         WHERE o.enabled",
    )
    .fetch_all(connection)
    .await
}

#[derive(Debug, Clone, sqlx::FromRow, serde::Serialize)]
pub struct HistoryRow {
    pub id: crate::domain::RotationId,
    pub organization: String,
    #[sqlx(try_from = "String")]
    pub step: RotationStep,
    pub outcome: Option<String>,
    pub attempts: i32,
    pub failure_reason: Option<String>,
    pub last_error: Option<String>,
    pub new_key_id: Option<Uuid>,
    pub created_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub next_attempt_at: DateTime<Utc>,
}

/// Rotations, newest first; one organization's when `organization_id` is given.
pub async fn history(
    connection: &mut PgConnection,
    organization_id: Option<crate::domain::OrganizationId>,
) -> Result<Vec<HistoryRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT r.id, o.name AS organization, r.step, r.outcome, r.attempts, r.failure_reason, r.last_error, r.new_key_id,
                r.created_at, r.finished_at, r.next_attempt_at
         FROM rotations r JOIN organizations o ON o.id = r.organization_id
         WHERE $1::uuid IS NULL OR r.organization_id = $1
         ORDER BY r.created_at DESC LIMIT 200",
    )
    .bind(organization_id)
    .fetch_all(connection)
    .await
}

/// The advisory-lock key of an organization's rotation: all 128 bits folded into 64.
/// (The first 8 bytes alone are mostly a UUIDv7's timestamp: organizations imported in the
/// same millisecond shared a lock, and one of them waited for the other's rotation.)
fn lock_key(organization_id: crate::domain::OrganizationId) -> i64 {
    let (high, low) = organization_id.as_uuid().as_u64_pair();
    // The bits as they are: PostgreSQL advisory lock keys are signed.
    (high ^ low).cast_signed()
}

/// Takes the organization's rotation lock on this connection (session-level: held until
/// released or the connection ends, so a daemon that dies releases it). False when
/// another connection holds it.
pub async fn try_lock(
    connection: &mut PgConnection,
    organization_id: crate::domain::OrganizationId,
) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
        .bind(lock_key(organization_id))
        .fetch_one(connection)
        .await
}

pub async fn unlock(
    connection: &mut PgConnection,
    organization_id: crate::domain::OrganizationId,
) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar("SELECT pg_advisory_unlock($1)")
        .bind(lock_key(organization_id))
        .fetch_one(connection)
        .await
}

/// The fencing check before a call to Microsoft: the lock's connection is alive, so the
/// lock is still ours.
pub async fn still_locked(
    connection: &mut PgConnection,
    organization_id: crate::domain::OrganizationId,
) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()
                        AND granted AND ((classid::bigint << 32) | objid::bigint) = $1)",
    )
    .bind(lock_key(organization_id))
    .fetch_one(connection)
    .await
}

#[cfg(test)]
mod tests {
    #[test]
    fn organizations_created_in_the_same_millisecond_have_their_own_locks() {
        let ids: Vec<crate::domain::OrganizationId> = (0..10_000)
            .map(|_| crate::domain::OrganizationId::new())
            .collect();
        let keys: std::collections::HashSet<i64> =
            ids.iter().map(|id| super::lock_key(*id)).collect();
        assert_eq!(keys.len(), ids.len());
    }
}
