//! Readiness: whether the database is reachable and its schema current, watched by one
//! loop that logs each change once (not once per probe) and tells systemd.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::notify;

#[derive(Debug, Default)]
pub struct Readiness {
    database_up: AtomicBool,
}

impl Readiness {
    pub fn database_up(&self) -> bool {
        self.database_up.load(Ordering::Acquire)
    }
    pub fn set_database_up(&self, up: bool) {
        self.database_up.store(up, Ordering::Release);
    }
}

/// Probes the database every `interval` until `shutdown`; logs outages and recoveries once.
pub async fn monitor_database(
    pool: PgPool,
    readiness: std::sync::Arc<Readiness>,
    interval: Duration,
    probe_timeout: Duration,
    shutdown: CancellationToken,
) {
    let mut down_since: Option<Instant> = None;
    loop {
        let probe = tokio::time::timeout(probe_timeout, crate::store::ping(&pool)).await;
        let result = match probe {
            Ok(result) => result.map_err(|error| error.to_string()),
            Err(_) => Err(format!(
                "no answer within {}",
                crate::config::format_duration(probe_timeout)
            )),
        };
        match (result, down_since) {
            (Ok(()), Some(since)) => {
                tracing::info!(
                    outage_seconds = since.elapsed().as_secs(),
                    "database reachable again after {}",
                    crate::config::format_duration(Duration::from_secs(since.elapsed().as_secs()))
                );
                down_since = None;
                readiness.set_database_up(true);
                crate::telemetry::metrics::database_up(true);
                notify::status("running");
            }
            (Err(error), None) => {
                tracing::error!("database unreachable, not ready until it returns: {error}");
                down_since = Some(Instant::now());
                readiness.set_database_up(false);
                crate::telemetry::metrics::database_up(false);
                notify::status("database unreachable; waiting for it to return");
            }
            (Ok(()), None) => {
                readiness.set_database_up(true);
                crate::telemetry::metrics::database_up(true);
            }
            (Err(_), Some(_)) => {}
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
        }
    }
}
