//! The daemon's HTTP listener: `/healthz` (process alive), `/readyz` (database reachable,
//! 503 otherwise) and `/metrics` (Prometheus text format). Loopback by default; it serves
//! no secret and accepts no input.

use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio_util::sync::CancellationToken;

use crate::context::Context;

#[derive(Clone)]
struct HttpState {
    context: Context,
    metrics: PrometheusHandle,
    /// When the fleet gauges were last read from the database. Held while reading, so
    /// that scrapes arriving together wait for one read instead of each running their own.
    refreshed: std::sync::Arc<tokio::sync::Mutex<Option<tokio::time::Instant>>>,
    /// The per-organization families as last rendered from the rows (kept for a scrape
    /// during a database outage, as the recorder keeps its gauges).
    organizations: std::sync::Arc<std::sync::Mutex<std::sync::Arc<String>>>,
}

/// The fleet gauges are read from the database at most this often, however many scrapers
/// there are (64 scrapes at once used to take 64 of the pool's connections).
const GAUGES_FRESH_FOR: Duration = Duration::from_secs(2);

pub fn router(context: Context, metrics: PrometheusHandle) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_handler))
        .with_state(HttpState {
            context,
            metrics,
            refreshed: Default::default(),
            organizations: Default::default(),
        })
}

async fn readyz(State(state): State<HttpState>) -> impl IntoResponse {
    if state.context.readiness.database_up() {
        (StatusCode::OK, "ready\n")
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: database unreachable\n",
        )
    }
}

async fn metrics_handler(State(state): State<HttpState>) -> impl IntoResponse {
    if state.context.readiness.database_up() {
        let mut refreshed = state.refreshed.lock().await;
        if refreshed.is_none_or(|at| at.elapsed() >= GAUGES_FRESH_FOR) {
            if let Some(organizations) = refresh_gauges(&state.context).await {
                *state.organizations.lock().expect("metrics lock") =
                    std::sync::Arc::new(organizations);
            }
            *refreshed = Some(tokio::time::Instant::now());
        }
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        {
            let organizations = state.organizations.lock().expect("metrics lock").clone();
            let mut text = state.metrics.render();
            text.push_str(&organizations);
            text
        },
    )
}

/// Gauges read from the database at scrape time, bounded so a slow database cannot
/// hold a scrape for long; returns the per-organization families, rendered.
async fn refresh_gauges(context: &Context) -> Option<String> {
    let read = tokio::time::timeout(Duration::from_secs(3), async {
        let mut connection = context.pool.acquire().await?;
        let statuses = crate::store::checks::gauges(&mut connection).await?;
        let firing = crate::store::alerts::firing_by_kind(&mut connection).await?;
        let outbox = crate::store::alerts::pending_by_sink(&mut connection).await?;
        Ok::<_, sqlx::Error>((statuses, firing, outbox))
    })
    .await;
    let (statuses, firing, outbox) = match read {
        Ok(Ok(read)) => read,
        Ok(Err(error)) => {
            tracing::warn!("metrics: reading the fleet failed: {error}");
            return None;
        }
        Err(_) => {
            tracing::warn!("metrics: reading the fleet took longer than 3s");
            return None;
        }
    };
    // Every organization has a status row (made with it), so the gauges' rows count them.
    for enabled in [true, false] {
        let count = statuses.iter().filter(|s| s.enabled == enabled).count();
        crate::telemetry::metrics::organizations(enabled, i64::try_from(count).unwrap_or(i64::MAX));
    }
    let mut states: std::collections::BTreeMap<crate::domain::State, i64> =
        std::collections::BTreeMap::new();
    for status in statuses.iter().filter(|s| s.enabled) {
        *states.entry(status.state).or_default() += 1;
    }
    let mut pending: Vec<(String, i64)> = context
        .settings
        .alerts
        .sink_names()
        .into_iter()
        .map(|sink| (sink, 0))
        .collect();
    for (sink, count) in outbox {
        match pending.iter_mut().find(|(name, _)| *name == sink) {
            Some(entry) => entry.1 = count,
            None => pending.push((sink, count)),
        }
    }
    crate::telemetry::metrics::fleet(&crate::telemetry::metrics::FleetSnapshot {
        states: crate::checks::verdict::State::ALL
            .iter()
            .map(|state| {
                let count = states.get(state).copied().unwrap_or(0);
                (state.as_str(), count)
            })
            .collect(),
        firing,
        outbox: pending,
    });
    let organizations: Vec<_> = statuses
        .iter()
        .filter(|status| status.enabled)
        .map(|status| crate::telemetry::metrics::OrganizationGauge {
            name: status.name.clone(),
            state: status.state,
            secret_expires: status.secret_expires_at.map(|t| t.timestamp() as f64),
            last_success: status.last_success_at.map(|t| t.timestamp() as f64),
            rotation_due: rotation_due(&context.settings.rotation, status)
                .map(|t| t.timestamp() as f64),
        })
        .collect();
    Some(crate::telemetry::metrics::render_organizations(
        &organizations,
    ))
}

/// When the organization's secret is next rotated: the unfinished rotation's next attempt,
/// else the plan's due time; none when it is not rotated or its expiry is unknown.
fn rotation_due(
    rotation: &crate::config::RotationSettings,
    status: &crate::store::checks::GaugeRow,
) -> Option<chrono::DateTime<chrono::Utc>> {
    if !status.enabled {
        return None;
    }
    crate::target::rotation_status(
        rotation,
        &crate::target::RotationFacts {
            name: &status.name,
            settings: &status.settings.0,
            secret_start: status.secret_start_at,
            secret_end: status.secret_expires_at,
            next_attempt: status.rotation_next_attempt_at,
        },
    )
    .next_due
}

/// Serves until `shutdown` is cancelled. Every connection must send a request's headers
/// within `request_timeout` (an idle or slow client is cut off, and so is a keep-alive
/// connection that sends nothing more), a request is answered within it (503 otherwise),
/// and at most `max_connections` are served at once: a connection over the limit is
/// closed at once, so a flood of scrapers or a slow-loris client cannot hold the daemon.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    settings: crate::config::HttpSettings,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let timeout = settings.request_timeout;
    let router = router.layer(axum::middleware::from_fn(
        move |request: axum::extract::Request, next: axum::middleware::Next| async move {
            match tokio::time::timeout(timeout, next.run(request)).await {
                Ok(response) => response,
                Err(_) => {
                    (StatusCode::SERVICE_UNAVAILABLE, "not answered in time\n").into_response()
                }
            }
        },
    ));
    let connections = std::sync::Arc::new(tokio::sync::Semaphore::new(settings.max_connections));
    let served = tokio_util::task::TaskTracker::new();
    let mut refused_logged: Option<tokio::time::Instant> = None;
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    // Out of file descriptors and the like: wait, do not spin.
                    tracing::warn!("http listener: cannot accept a connection: {error}");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            },
            _ = shutdown.cancelled() => break,
        };
        let Ok(permit) = connections.clone().try_acquire_owned() else {
            if refused_logged.is_none_or(|at| at.elapsed() >= Duration::from_secs(60)) {
                tracing::warn!(
                    max_connections = settings.max_connections,
                    "http listener: too many connections at once; closing new ones (logged once a minute)"
                );
                refused_logged = Some(tokio::time::Instant::now());
            }
            drop(stream);
            continue;
        };
        let service = hyper_util::service::TowerToHyperService::new(router.clone());
        let shutdown = shutdown.clone();
        served.spawn(async move {
            let _permit = permit;
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(timeout)
                .max_buf_size(64 << 10);
            let connection =
                builder.serve_connection(hyper_util::rt::TokioIo::new(stream), service);
            let mut connection = std::pin::pin!(connection);
            tokio::select! {
                _ = connection.as_mut() => {}
                _ = shutdown.cancelled() => {
                    connection.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(timeout, connection).await;
                }
            }
        });
    }
    served.close();
    let _ = tokio::time::timeout(timeout, served.wait()).await;
    Ok(())
}
