//! The boot sequence of `kodo-access run`, top to bottom, one log line per step.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Settings;
use crate::context::Context;
use crate::crypto::Keyring;
use crate::health;
use crate::scheduler::Scheduler;
use crate::store::{self, SchemaStatus};
use crate::{http, notify, telemetry};

/// Runs the daemon until SIGTERM or SIGINT; returns when it has stopped cleanly.
pub async fn run(settings: Settings) -> anyhow::Result<()> {
    let shutdown = CancellationToken::new();
    spawn_signal_handler(shutdown.clone())?;
    run_until(settings, shutdown).await
}

/// Runs the daemon until `shutdown` is cancelled (the demo drives it this way).
pub async fn run_until(settings: Settings, shutdown: CancellationToken) -> anyhow::Result<()> {
    let settings = Arc::new(settings);
    tracing::info!(version = env!("CARGO_PKG_VERSION"), "kodo-access starting");

    let keyring = Arc::new(Keyring::load(&settings.crypto)?);
    tracing::info!(key_id = keyring.current_id(), "master key loaded");

    let jobs: Vec<&'static str> = crate::jobs::JobName::ALL
        .iter()
        .map(|job| job.as_str())
        .collect();
    let metrics = telemetry::metrics::install(&jobs)?;
    let pool = store::lazy_pool(&settings.database)?;
    let context = Context::new(settings.clone(), pool.clone(), keyring, shutdown.clone())?;
    let readiness = context.readiness.clone();
    let sinks = settings.alerts.sink_names();
    tracing::info!(sinks = %if sinks.is_empty() { "log only".to_string() } else { format!("log, {}", sinks.join(", ")) }, "alert sinks");

    let listener = tokio::net::TcpListener::bind(settings.http.listen)
        .await
        .map_err(|error| anyhow::anyhow!("cannot listen on {}: {error}", settings.http.listen))?;
    let rotation = &settings.rotation;
    if rotation.enabled && rotation.deliverers.is_empty() {
        tracing::warn!(
            "secret rotation is on but no [[rotation.file]], [[rotation.command]] or [[rotation.webhook]] is configured: nothing is rotated (the backup server would lose the replaced secret), secret_expiring alerts instead"
        );
    } else if rotation.active() {
        let described: Vec<String> = rotation
            .deliverers
            .iter()
            .map(|scoped| match scoped.organizations.as_slice() {
                [] => scoped.deliverer.describe(),
                names => format!("{} (for {})", scoped.deliverer.describe(), names.join(", ")),
            })
            .collect();
        tracing::info!(deliverers = %described.join(", "), "secret rotation on");
    }
    tracing::info!(address = %settings.http.listen, "http listener up: /healthz /readyz /metrics");
    let tracker = TaskTracker::new();
    tracker.spawn(http::serve(
        listener,
        http::router(context.clone(), metrics),
        settings.http.clone(),
        shutdown.clone(),
    ));

    if let Some(interval) = notify::watchdog_interval() {
        tracing::info!(
            interval_ms = crate::domain::millis(interval),
            "systemd watchdog enabled"
        );
        tracker.spawn(notify::watchdog_loop(interval, shutdown.clone()));
    }

    if !wait_for_database(&context).await {
        tracing::info!("stopped before the database was ready");
        return finish(tracker, None, &settings).await;
    }
    readiness.set_database_up(true);
    telemetry::metrics::database_up(true);
    tracker.spawn(health::monitor_database(
        pool.clone(),
        readiness,
        settings.database.health_interval,
        settings.database.connect_timeout,
        shutdown.clone(),
    ));

    let scheduler = Scheduler::start(context.clone(), tracker.clone()).await?;
    notify::ready();
    tracing::info!("ready");

    shutdown.cancelled().await;
    finish(tracker, Some(scheduler), &settings).await
}

/// Stops scheduling, lets running work finish within the deadline, then returns.
async fn finish(
    tracker: TaskTracker,
    scheduler: Option<Scheduler>,
    settings: &Settings,
) -> anyhow::Result<()> {
    notify::stopping();
    tracing::info!(
        deadline_ms = crate::domain::millis(settings.daemon.shutdown_timeout),
        "stopping: no new work, waiting for running work"
    );
    if let Some(scheduler) = scheduler {
        scheduler.stop().await;
    }
    tracker.close();
    if tokio::time::timeout(settings.daemon.shutdown_timeout, tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            "running work did not finish within {}; exiting anyway (every job is safe to interrupt)",
            crate::config::format_duration(settings.daemon.shutdown_timeout)
        );
    }
    tracing::info!("stopped");
    Ok(())
}

/// Waits until the database answers and its schema is current (applying migrations
/// when `database.auto_migrate` is on). Logs each distinct problem once. Returns false
/// when shutdown was requested first.
async fn wait_for_database(context: &Context) -> bool {
    let settings = &context.settings.database;
    let mut last_problem = String::new();
    let mut delay = Duration::from_millis(250);
    loop {
        let problem = match store::schema_status(&context.pool).await {
            Ok(SchemaStatus::Current) => {
                tracing::info!("database reachable, schema current");
                return true;
            }
            Ok(SchemaStatus::Behind { pending }) if settings.auto_migrate => {
                tracing::info!(pending, "applying database migrations");
                match store::migrate(&context.pool).await {
                    Ok(()) => continue,
                    Err(error) => format!("applying migrations failed: {error}"),
                }
            }
            Ok(SchemaStatus::Behind { pending }) => format!(
                "database schema is behind by {pending} migration(s): run `kodo-access migrate` (or set database.auto_migrate = true)"
            ),
            Ok(SchemaStatus::Ahead { unknown }) => format!(
                "database schema has migrations this version does not know ({unknown:?}): a newer kodo-access migrated it"
            ),
            Ok(SchemaStatus::Modified { version }) => {
                format!("applied migration {version} differs from this version's copy")
            }
            Err(error) => format!("database unreachable: {error}"),
        };
        if problem != last_problem {
            tracing::error!("not ready: {problem}");
            notify::status(&format!("not ready: {problem}"));
            last_problem = problem;
        }
        tokio::select! {
            _ = context.shutdown.cancelled() => return false,
            _ = tokio::time::sleep(delay) => {}
        }
        delay = (delay * 2).min(Duration::from_secs(10));
    }
}

fn spawn_signal_handler(shutdown: CancellationToken) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    tokio::spawn(async move {
        let name = tokio::select! {
            _ = terminate.recv() => "SIGTERM",
            _ = interrupt.recv() => "SIGINT",
        };
        tracing::info!("{name} received, shutting down");
        shutdown.cancel();
    });
    Ok(())
}
