//! The `credentials` table: sealed client secrets, current and past.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::crypto::Sealed;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct CredentialRow {
    pub id: crate::domain::CredentialId,
    pub organization_id: crate::domain::OrganizationId,
    pub key_id: Option<Uuid>,
    pub hint: Option<String>,
    pub display_name: Option<String>,
    pub start_at: Option<DateTime<Utc>>,
    pub end_at: Option<DateTime<Utc>>,
    #[sqlx(try_from = "String")]
    pub origin: crate::domain::CredentialOrigin,
    #[sqlx(try_from = "String")]
    pub status: crate::domain::CredentialStatus,
    pub rotation_id: Option<crate::domain::RotationId>,
    pub secret_key_id: String,
    pub created_at: DateTime<Utc>,
    pub activated_at: Option<DateTime<Utc>>,
    pub retired_at: Option<DateTime<Utc>>,
    pub removed_at: Option<DateTime<Utc>>,
    #[sqlx(try_from = "String")]
    pub kind: crate::domain::CredentialKind,
    /// A certificate's SHA-1 thumbprint (upper-case hex).
    pub thumbprint: Option<String>,
}

const COLUMNS: &str = "id, organization_id, key_id, hint, display_name, start_at, end_at, origin, status, rotation_id, secret_key_id, created_at, activated_at, retired_at, removed_at, kind, thumbprint";

pub struct NewCredential<'a> {
    pub id: crate::domain::CredentialId,
    pub organization_id: crate::domain::OrganizationId,
    pub key_id: Option<Uuid>,
    pub hint: Option<&'a str>,
    pub end_at: Option<DateTime<Utc>>,
    pub origin: crate::domain::CredentialOrigin,
    pub status: crate::domain::CredentialStatus,
    pub sealed: &'a Sealed,
    /// For a certificate: its DER, thumbprint and start (the key is what `sealed` holds).
    pub certificate: Option<CertificateColumns<'a>>,
}

pub struct CertificateColumns<'a> {
    pub der: &'a [u8],
    pub thumbprint: &'a str,
    pub start_at: DateTime<Utc>,
}

pub async fn insert(
    connection: &mut PgConnection,
    credential: NewCredential<'_>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO credentials (id, organization_id, key_id, hint, end_at, origin, status,
                                  secret_sealed, secret_key_id, activated_at,
                                  kind, certificate, thumbprint, start_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, CASE WHEN $7 = 'current' THEN now() END,
                 $10, $11, $12, $13)",
    )
    .bind(credential.id)
    .bind(credential.organization_id)
    .bind(credential.key_id)
    .bind(credential.hint)
    .bind(credential.end_at)
    .bind(credential.origin.as_str())
    .bind(credential.status.as_str())
    .bind(&credential.sealed.blob)
    .bind(&credential.sealed.key_id)
    .bind(if credential.certificate.is_some() {
        "certificate"
    } else {
        "secret"
    })
    .bind(credential.certificate.as_ref().map(|c| c.der))
    .bind(credential.certificate.as_ref().map(|c| c.thumbprint))
    .bind(credential.certificate.as_ref().map(|c| c.start_at))
    .execute(connection)
    .await
    .map(|_| ())
}

/// Marks the organization's current credential as `previous` and returns it, if any.
pub async fn retire_current(
    connection: &mut PgConnection,
    organization_id: crate::domain::OrganizationId,
) -> Result<Option<CredentialRow>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "UPDATE credentials SET status = 'previous', retired_at = now()
         WHERE organization_id = $1 AND status = 'current' RETURNING {COLUMNS}"
    )))
    .bind(organization_id)
    .fetch_optional(connection)
    .await
}

pub async fn list_for_organization(
    connection: &mut PgConnection,
    organization_id: crate::domain::OrganizationId,
) -> Result<Vec<CredentialRow>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM credentials WHERE organization_id = $1 ORDER BY created_at DESC"
    )))
    .bind(organization_id)
    .fetch_all(connection)
    .await
}

/// A sealed secret with the row it is bound to, for re-sealing.
#[derive(Debug, sqlx::FromRow)]
pub struct SealedRow {
    pub id: crate::domain::CredentialId,
    pub organization_id: crate::domain::OrganizationId,
    pub secret_sealed: Vec<u8>,
    pub secret_key_id: String,
}

/// Every sealed secret not sealed with `key_id`, locked until the transaction ends.
pub async fn sealed_not_under_key_for_update(
    connection: &mut PgConnection,
    key_id: &str,
) -> Result<Vec<SealedRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, organization_id, secret_sealed, secret_key_id FROM credentials
         WHERE secret_key_id <> $1 ORDER BY id FOR UPDATE",
    )
    .bind(key_id)
    .fetch_all(connection)
    .await
}

pub async fn replace_sealed(
    connection: &mut PgConnection,
    id: crate::domain::CredentialId,
    sealed: &Sealed,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE credentials SET secret_sealed = $2, secret_key_id = $3 WHERE id = $1")
        .bind(id)
        .bind(&sealed.blob)
        .bind(&sealed.key_id)
        .execute(connection)
        .await
        .map(|_| ())
}

/// (sealing key id, count) pairs, for `key status`.
pub async fn count_by_seal_key(
    connection: &mut PgConnection,
) -> Result<Vec<(String, i64)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT secret_key_id, count(*) FROM credentials GROUP BY secret_key_id ORDER BY 1",
    )
    .fetch_all(connection)
    .await
}

/// Every sealed secret, for verification.
pub async fn all_sealed(connection: &mut PgConnection) -> Result<Vec<SealedRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, organization_id, secret_sealed, secret_key_id FROM credentials ORDER BY id",
    )
    .fetch_all(connection)
    .await
}
