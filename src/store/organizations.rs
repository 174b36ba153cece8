//! The `organizations` table and the listing that joins in status and current credential.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::domain::OrgRef;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct OrganizationRow {
    pub id: crate::domain::OrganizationId,
    pub name: String,
    pub tenant_id: Uuid,
    pub client_id: Uuid,
    pub cloud: String,
    pub sharepoint_host: Option<String>,
    pub labels: sqlx::types::Json<std::collections::BTreeMap<String, String>>,
    pub enabled: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// One line of `org list`: the organization, its state and its current secret's expiry.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct OrganizationSummary {
    #[sqlx(flatten)]
    pub organization: OrganizationRow,
    pub state: Option<crate::domain::State>,
    pub last_check_at: Option<DateTime<Utc>>,
    pub secret_hint: Option<String>,
    pub secret_end_at: Option<DateTime<Utc>>,
}

pub struct NewOrganization<'a> {
    pub id: crate::domain::OrganizationId,
    pub name: &'a str,
    pub tenant_id: Uuid,
    pub client_id: Uuid,
    pub cloud: &'a str,
    pub sharepoint_host: Option<&'a str>,
    pub labels: &'a std::collections::BTreeMap<String, String>,
    pub settings: &'a crate::domain::OrganizationSettings,
}

pub async fn insert(
    connection: &mut PgConnection,
    organization: NewOrganization<'_>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO organizations (id, name, tenant_id, client_id, cloud, sharepoint_host, labels, settings)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(organization.id)
    .bind(organization.name)
    .bind(organization.tenant_id)
    .bind(organization.client_id)
    .bind(organization.cloud)
    .bind(organization.sharepoint_host)
    .bind(sqlx::types::Json(organization.labels))
    .bind(sqlx::types::Json(organization.settings))
    .execute(&mut *connection)
    .await?;
    sqlx::query("INSERT INTO organization_status (organization_id) VALUES ($1)")
        .bind(organization.id)
        .execute(&mut *connection)
        .await?;
    Ok(())
}

const SELECT: &str = "SELECT id, name, tenant_id, client_id, cloud, sharepoint_host, labels, enabled, created_at, updated_at FROM organizations";

/// The organization `reference` names, or an input error (exit status 2) saying there is none.
pub async fn require(
    connection: &mut PgConnection,
    reference: &OrgRef,
) -> anyhow::Result<OrganizationRow> {
    find(connection, reference)
        .await?
        .ok_or_else(|| crate::domain::input_error(format!("no organization {reference}")).into())
}

pub async fn find(
    connection: &mut PgConnection,
    reference: &OrgRef,
) -> Result<Option<OrganizationRow>, sqlx::Error> {
    match reference {
        OrgRef::Id(id) => {
            sqlx::query_as(sqlx::AssertSqlSafe(format!("{SELECT} WHERE id = $1")))
                .bind(id)
                .fetch_optional(connection)
                .await
        }
        OrgRef::Name(name) => {
            sqlx::query_as(sqlx::AssertSqlSafe(format!("{SELECT} WHERE name = $1")))
                .bind(name)
                .fetch_optional(connection)
                .await
        }
    }
}

/// The organization whose name equals `name` ignoring case (names are unique so).
pub async fn find_by_name_ignoring_case(
    connection: &mut PgConnection,
    name: &str,
) -> Result<Option<OrganizationRow>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "{SELECT} WHERE lower(name) = lower($1)"
    )))
    .bind(name)
    .fetch_optional(connection)
    .await
}

/// Names that differ only by case, each clash as one list (what the case-insensitive
/// unique index of migration 8 cannot be built over). Empty before the table exists.
pub async fn names_clashing_by_case(
    connection: &mut PgConnection,
) -> Result<Vec<Vec<String>>, sqlx::Error> {
    let exists: bool = sqlx::query_scalar("SELECT to_regclass('organizations') IS NOT NULL")
        .fetch_one(&mut *connection)
        .await?;
    if !exists {
        return Ok(Vec::new());
    }
    sqlx::query_scalar(
        "SELECT array_agg(name ORDER BY name) FROM organizations GROUP BY lower(name)
         HAVING count(*) > 1 ORDER BY lower(name)",
    )
    .fetch_all(connection)
    .await
}

/// Same as [`find`], locking the row until the transaction ends.
pub async fn find_for_update(
    connection: &mut PgConnection,
    reference: &OrgRef,
) -> Result<Option<OrganizationRow>, sqlx::Error> {
    match reference {
        OrgRef::Id(id) => {
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "{SELECT} WHERE id = $1 FOR UPDATE"
            )))
            .bind(id)
            .fetch_optional(connection)
            .await
        }
        OrgRef::Name(name) => {
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "{SELECT} WHERE name = $1 FOR UPDATE"
            )))
            .bind(name)
            .fetch_optional(connection)
            .await
        }
    }
}

pub async fn find_by_tenant_and_client(
    connection: &mut PgConnection,
    tenant_id: Uuid,
    client_id: Uuid,
) -> Result<Option<OrganizationRow>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "{SELECT} WHERE tenant_id = $1 AND client_id = $2"
    )))
    .bind(tenant_id)
    .bind(client_id)
    .fetch_optional(connection)
    .await
}

pub async fn list(connection: &mut PgConnection) -> Result<Vec<OrganizationSummary>, sqlx::Error> {
    sqlx::query_as(
        "SELECT o.id, o.name, o.tenant_id, o.client_id, o.cloud, o.sharepoint_host, o.labels,
                o.enabled, o.created_at, o.updated_at,
                s.state, s.last_check_at, c.hint AS secret_hint, c.end_at AS secret_end_at
         FROM organizations o
         LEFT JOIN organization_status s ON s.organization_id = o.id
         LEFT JOIN credentials c ON c.organization_id = o.id AND c.status = 'current'
         ORDER BY o.name",
    )
    .fetch_all(connection)
    .await
}

pub async fn set_enabled(
    connection: &mut PgConnection,
    id: crate::domain::OrganizationId,
    enabled: bool,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE organizations SET enabled = $2, updated_at = now() WHERE id = $1")
        .bind(id)
        .bind(enabled)
        .execute(connection)
        .await
        .map(|_| ())
}

pub async fn delete(
    connection: &mut PgConnection,
    id: crate::domain::OrganizationId,
) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM organizations WHERE id = $1")
        .bind(id)
        .execute(connection)
        .await
        .map(|_| ())
}

pub async fn set_settings(
    connection: &mut PgConnection,
    organization_id: crate::domain::OrganizationId,
    settings: &crate::domain::OrganizationSettings,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE organizations SET settings = $2, updated_at = now() WHERE id = $1")
        .bind(organization_id)
        .bind(sqlx::types::Json(settings))
        .execute(connection)
        .await
        .map(|_| ())
}

pub async fn settings(
    connection: &mut PgConnection,
    id: crate::domain::OrganizationId,
) -> Result<crate::domain::OrganizationSettings, sqlx::Error> {
    sqlx::query_scalar::<_, sqlx::types::Json<crate::domain::OrganizationSettings>>(
        "SELECT settings FROM organizations WHERE id = $1",
    )
    .bind(id)
    .fetch_one(connection)
    .await
    .map(|settings| settings.0)
}

pub async fn set_sharepoint_host(
    connection: &mut PgConnection,
    id: crate::domain::OrganizationId,
    host: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE organizations SET sharepoint_host = $2, updated_at = now() WHERE id = $1")
        .bind(id)
        .bind(host)
        .execute(connection)
        .await
        .map(|_| ())
}
