//! The `audit_log` table: every change to an organization or a credential, never a secret.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

#[derive(Debug, Default)]
pub struct AuditEntry<'a> {
    pub actor: &'a str,
    pub action: &'a str,
    pub organization_id: Option<crate::domain::OrganizationId>,
    pub organization_name: Option<&'a str>,
    pub credential_id: Option<crate::domain::CredentialId>,
    pub key_id: Option<Uuid>,
    pub rotation_id: Option<crate::domain::RotationId>,
    pub details: serde_json::Value,
}

pub async fn record(
    connection: &mut PgConnection,
    entry: AuditEntry<'_>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO audit_log (actor, action, organization_id, organization_name, credential_id,
                                key_id, rotation_id, details)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(entry.actor)
    .bind(entry.action)
    .bind(entry.organization_id)
    .bind(entry.organization_name)
    .bind(entry.credential_id)
    .bind(entry.key_id)
    .bind(entry.rotation_id)
    .bind(if entry.details.is_null() {
        serde_json::json!({})
    } else {
        entry.details
    })
    .execute(connection)
    .await
    .map(|_| ())
}

#[derive(Debug, Clone, sqlx::FromRow, serde::Serialize)]
pub struct AuditRow {
    pub id: i64,
    pub at: DateTime<Utc>,
    pub actor: String,
    pub action: String,
    pub organization_id: Option<crate::domain::OrganizationId>,
    pub organization_name: Option<String>,
    pub credential_id: Option<crate::domain::CredentialId>,
    pub key_id: Option<Uuid>,
    pub rotation_id: Option<crate::domain::RotationId>,
    pub details: serde_json::Value,
}

/// Newest first; all organizations when `organization_id` is `None`.
pub async fn list(
    connection: &mut PgConnection,
    organization_id: Option<crate::domain::OrganizationId>,
    limit: i64,
) -> Result<Vec<AuditRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, at, actor, action, organization_id, organization_name, credential_id, key_id,
                rotation_id, details
         FROM audit_log WHERE $1::uuid IS NULL OR organization_id = $1
         ORDER BY id DESC LIMIT $2",
    )
    .bind(organization_id)
    .bind(limit)
    .fetch_all(connection)
    .await
}

/// The name of an organization `reference` named that was removed (its newest
/// `organization.removed` entry), for a removal repeated after it was cut short.
pub async fn removed_organization_name(
    connection: &mut PgConnection,
    reference: &crate::domain::OrgRef,
) -> Result<Option<String>, sqlx::Error> {
    let (id, name) = match reference {
        crate::domain::OrgRef::Id(id) => (Some(*id), None),
        crate::domain::OrgRef::Name(name) => (None, Some(name.as_str())),
    };
    sqlx::query_scalar(
        "SELECT organization_name FROM audit_log
         WHERE action = 'organization.removed'
           AND (organization_id = $1 OR lower(organization_name) = lower($2))
         ORDER BY id DESC LIMIT 1",
    )
    .bind(id)
    .bind(name)
    .fetch_optional(connection)
    .await
    .map(Option::flatten)
}
