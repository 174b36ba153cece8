//! What each periodic job does, callable once from tests and the CLI (`job run NAME`).
//!
//! The scheduler only decides *when* (see `scheduler.rs`); this file decides *what*.
//! Every job is idempotent: running it twice, or after a crash halfway, is harmless.
//! Every run is recorded in `job_runs` and counted in the metrics.

use std::time::Instant;

use chrono::Utc;

use crate::context::Context;
use crate::store;
use crate::telemetry::metrics;

/// Every job kodo-access knows: the one list that registers them all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum JobName {
    /// Checks every enabled organization whose check is due.
    Checks,
    /// Delivers the alert outbox to every sink, retrying failed deliveries.
    DeliverAlerts,
    /// Re-sends active alerts to every Alertmanager.
    ResendAlerts,
    /// Starts due secret rotations and resumes unfinished ones.
    Rotations,
    /// Deletes check history, delivered alert notifications and job runs past their retention.
    Housekeeping,
}

/// When a job runs: on a cron schedule, or every so often.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Schedule {
    Cron(String),
    Every(std::time::Duration),
}

impl std::fmt::Display for Schedule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Schedule::Cron(expression) => f.write_str(expression),
            Schedule::Every(interval) => {
                write!(f, "every {}", crate::config::format_duration(*interval))
            }
        }
    }
}

impl JobName {
    pub const ALL: &'static [JobName] = &[
        JobName::Checks,
        JobName::DeliverAlerts,
        JobName::ResendAlerts,
        JobName::Rotations,
        JobName::Housekeeping,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            JobName::Checks => "checks",
            JobName::DeliverAlerts => "deliver-alerts",
            JobName::ResendAlerts => "resend-alerts",
            JobName::Rotations => "rotations",
            JobName::Housekeeping => "housekeeping",
        }
    }

    /// When this job runs, from the configuration.
    pub fn schedule(self, context: &Context) -> Schedule {
        let settings = &context.settings;
        match self {
            JobName::Checks => Schedule::Every(settings.checks.pickup_interval),
            JobName::DeliverAlerts => Schedule::Every(settings.alerts.delivery_interval),
            JobName::ResendAlerts => Schedule::Every(settings.alerts.resend_interval),
            JobName::Rotations => Schedule::Every(settings.rotation.pickup_interval),
            JobName::Housekeeping => Schedule::Cron(settings.jobs.housekeeping.schedule.clone()),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    Schedule,
    Manual,
}

impl Trigger {
    fn as_str(self) -> &'static str {
        match self {
            Trigger::Schedule => "schedule",
            Trigger::Manual => "manual",
        }
    }
}

/// Runs `job` once: records the run, logs one summary line, updates the metrics.
/// Returns the summary, or the error that ended the run. Frequent jobs that found
/// nothing to do (an empty summary) leave no record and no log line.
#[tracing::instrument(name = "job", skip_all, fields(job = job.as_str()))]
pub async fn run(context: &Context, job: JobName, trigger: Trigger) -> anyhow::Result<String> {
    let started = Instant::now();
    let started_at = Utc::now();
    let result = match job {
        JobName::Checks => crate::checks::run::check_due(context).await,
        JobName::DeliverAlerts => crate::alerts::delivery::deliver_outbox(context).await.map(
            |(delivered, failed)| {
                if delivered + failed == 0 {
                    String::new()
                } else {
                    format!(
                        "delivered {delivered} notification(s), {failed} failed and will be retried"
                    )
                }
            },
        ),
        JobName::ResendAlerts => {
            crate::alerts::delivery::resend_active(context)
                .await
                .map(|sent| {
                    if sent == 0 {
                        String::new()
                    } else {
                        format!("re-sent {sent} active alert(s) to every Alertmanager")
                    }
                })
        }
        JobName::Rotations => crate::rotation::procedure::rotate_due(context).await,
        JobName::Housekeeping => housekeeping(context).await,
    };
    if matches!(&result, Ok(summary) if summary.is_empty()) && trigger == Trigger::Schedule {
        return result;
    }
    let run_id = {
        let mut connection = context.pool.acquire().await?;
        store::job_runs::start(&mut connection, job.as_str(), trigger.as_str(), started_at).await?
    };
    let elapsed = started.elapsed();
    let (outcome, summary) = match &result {
        Ok(summary) if summary.is_empty() => ("succeeded", "nothing to do".to_string()),
        Ok(summary) => ("succeeded", summary.clone()),
        Err(error) => ("failed", format!("{error:#}")),
    };
    metrics::job_finished(job.as_str(), outcome, elapsed);
    match &result {
        Ok(_) => tracing::info!(
            job = job.as_str(),
            trigger = trigger.as_str(),
            elapsed_ms = crate::domain::millis(elapsed),
            "job succeeded: {summary}"
        ),
        Err(error) => tracing::warn!(
            job = job.as_str(),
            trigger = trigger.as_str(),
            elapsed_ms = crate::domain::millis(elapsed),
            "job failed: {error:#}"
        ),
    }
    let mut connection = context.pool.acquire().await?;
    store::job_runs::finish(&mut connection, run_id, outcome, &summary).await?;
    result.map(|_| summary)
}

async fn housekeeping(context: &Context) -> anyhow::Result<String> {
    let settings = &context.settings.jobs.housekeeping;
    let now = Utc::now();
    let cutoff = |retention: std::time::Duration| {
        now - chrono::Duration::from_std(retention).unwrap_or(chrono::Duration::MAX)
    };
    let mut connection = context.pool.acquire().await?;
    let checks = store::housekeeping::prune_checks(
        &mut connection,
        cutoff(settings.check_history_retention),
    )
    .await?;
    let notifications = store::housekeeping::prune_delivered_outbox(
        &mut connection,
        cutoff(settings.delivered_alert_retention),
    )
    .await?;
    let job_runs =
        store::housekeeping::prune_job_runs(&mut connection, cutoff(settings.job_run_retention))
            .await?;
    let wiped = store::housekeeping::wipe_removed_secrets(&mut connection).await?;
    Ok(format!(
        "deleted {checks} checks, {notifications} delivered alert notifications and {job_runs} job runs past retention; wiped the ciphertext of {wiped} removed secret(s)"
    ))
}
