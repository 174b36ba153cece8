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
