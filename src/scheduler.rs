//! The only place that runs cron: turns each job's schedule into runs of `jobs::run`
//! (configuration checks a schedule's syntax with the same parser when it is loaded).
//!
//! Built on tokio-cron-scheduler's in-memory scheduler; all state lives in our own tables.
//! A job whose previous run has not finished skips its turn instead of piling up. Runs are
//! spawned on the daemon's `TaskTracker`, so shutdown can wait for them.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use tokio_cron_scheduler::{Job, JobScheduler};
use tokio_util::task::TaskTracker;

use crate::context::Context;
use crate::jobs::{self, JobName, Schedule, Trigger};

pub struct Scheduler {
    inner: JobScheduler,
}

impl Scheduler {
    /// Registers every job of [`JobName::ALL`] with its schedule and starts ticking.
    pub async fn start(context: Context, tracker: TaskTracker) -> anyhow::Result<Scheduler> {
        let inner = JobScheduler::new().await?;
        for &job in JobName::ALL {
            let schedule = job.schedule(&context);
            let running = Arc::new(AtomicBool::new(false));
            // Turns skipped since the last run that succeeded (a database outage can hold
            // runs for a minute of ticks).
            let skipped = Arc::new(AtomicU64::new(0));
            let context = context.clone();
            let tracker = tracker.clone();
            let body = move |_, _| {
                let context = context.clone();
                let running = running.clone();
                let skipped = skipped.clone();
                let tracker = tracker.clone();
                Box::pin(async move {
                    if context.shutdown.is_cancelled() || tracker.is_closed() {
                        return;
                    }
                    if running.swap(true, Ordering::AcqRel) {
                        if skipped.fetch_add(1, Ordering::AcqRel) == 0 {
                            tracing::info!(
                                job = job.as_str(),
                                "previous run still going, skipping turns until a run succeeds"
                            );
                        }
                        return;
                    }
                    tracker.spawn(async move {
                        // Errors are logged and recorded by jobs::run.
                        let succeeded = jobs::run(&context, job, Trigger::Schedule).await.is_ok();
                        // Counted until a run succeeds: an outage that fails runs one after
                        // another is said once, when it begins, and summed up when it ends.
                        if succeeded {
                            let turns = skipped.swap(0, Ordering::AcqRel);
                            if turns > 0 {
                                tracing::debug!(
                                    job = job.as_str(),
                                    "running normally again; {turns} turn(s) skipped meanwhile"
                                );
                            }
                        }
                        running.store(false, Ordering::Release);
                    });
                })
                    as std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>
            };
            let cron_job = match &schedule {
                Schedule::Cron(expression) => Job::new_async(expression.as_str(), body)?,
                Schedule::Every(interval) => Job::new_repeated_async(*interval, body)?,
            };
            inner.add(cron_job).await?;
            tracing::info!(job = job.as_str(), schedule = %schedule, "job scheduled");
        }
        inner.start().await?;
        Ok(Scheduler { inner })
    }

    /// Stops triggering new runs. Runs already started keep going on the tracker.
    pub async fn stop(mut self) {
        if let Err(error) = self.inner.shutdown().await {
            tracing::warn!("stopping the scheduler: {error}");
        }
    }
}
