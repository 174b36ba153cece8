//! The `job_runs` table: when each periodic job ran and how it ended.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;

pub async fn start(
    connection: &mut PgConnection,
    job: &str,
    trigger: &str,
    started_at: DateTime<Utc>,
) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "INSERT INTO job_runs (job, trigger, started_at) VALUES ($1, $2, $3) RETURNING id",
    )
    .bind(job)
    .bind(trigger)
    .bind(started_at)
    .fetch_one(connection)
    .await
}

pub async fn finish(
    connection: &mut PgConnection,
    id: i64,
    outcome: &str,
    summary: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE job_runs SET finished_at = now(), outcome = $2, summary = $3 WHERE id = $1")
        .bind(id)
        .bind(outcome)
        .bind(summary)
        .execute(connection)
        .await
        .map(|_| ())
}

#[derive(Debug, Clone, sqlx::FromRow, serde::Serialize)]
pub struct JobRunRow {
    pub job: String,
    pub trigger: String,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub outcome: Option<String>,
    pub summary: Option<String>,
}

/// The latest run of each job.
pub async fn latest(connection: &mut PgConnection) -> Result<Vec<JobRunRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT DISTINCT ON (job) job, trigger, started_at, finished_at, outcome, summary
         FROM job_runs ORDER BY job, started_at DESC, id DESC",
    )
    .fetch_all(connection)
    .await
}

/// Failed runs per job, for `job list`.
pub async fn failures_by_job(
    connection: &mut PgConnection,
) -> Result<Vec<(String, i64)>, sqlx::Error> {
    sqlx::query_as("SELECT job, count(*) FROM job_runs WHERE outcome = 'failed' GROUP BY job")
        .fetch_all(connection)
        .await
}
