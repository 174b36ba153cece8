//! Pruning of history past its retention period (the housekeeping job's statements).

use chrono::{DateTime, Utc};
use sqlx::PgConnection;

pub async fn prune_checks(
    connection: &mut PgConnection,
    before: DateTime<Utc>,
) -> Result<u64, sqlx::Error> {
    sqlx::query("DELETE FROM checks WHERE started_at < $1")
        .bind(before)
        .execute(connection)
        .await
        .map(|result| result.rows_affected())
}

pub async fn prune_delivered_outbox(
    connection: &mut PgConnection,
    before: DateTime<Utc>,
) -> Result<u64, sqlx::Error> {
    sqlx::query("DELETE FROM alert_outbox WHERE delivered_at IS NOT NULL AND delivered_at < $1")
        .bind(before)
        .execute(connection)
        .await
        .map(|result| result.rows_affected())
}

pub async fn prune_job_runs(
    connection: &mut PgConnection,
    before: DateTime<Utc>,
) -> Result<u64, sqlx::Error> {
    sqlx::query("DELETE FROM job_runs WHERE finished_at IS NOT NULL AND finished_at < $1")
        .bind(before)
        .execute(connection)
        .await
        .map(|result| result.rows_affected())
}

/// Wipes the ciphertext of credentials that are removed or discarded (rows from before
/// removal wiped it, or marked so by hand). Returns how many were wiped.
pub async fn wipe_removed_secrets(connection: &mut PgConnection) -> sqlx::Result<u64> {
    Ok(sqlx::query(
        "UPDATE credentials SET secret_sealed = '\\x'::bytea WHERE status IN ('removed', 'discarded') AND length(secret_sealed) > 0",
    )
    .execute(&mut *connection)
    .await?
    .rows_affected())
}
