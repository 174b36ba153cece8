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
}

pub fn router(context: Context, metrics: PrometheusHandle) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_handler))
        .with_state(HttpState { context, metrics })
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
        refresh_gauges(&state.context).await;
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(),
    )
}

/// Gauges read from the database at scrape time, bounded so a slow database cannot
/// hold a scrape for long.
async fn refresh_gauges(context: &Context) {
    let counts = tokio::time::timeout(Duration::from_secs(2), async {
        let mut connection = context.pool.acquire().await?;
        crate::store::organizations::count_by_enabled(&mut connection).await
    })
    .await;
    if let Ok(Ok(counts)) = counts {
        for enabled in [true, false] {
            let count = counts
                .iter()
                .find(|(e, _)| *e == enabled)
                .map(|(_, n)| *n)
                .unwrap_or(0);
            crate::telemetry::metrics::organizations(enabled, count);
        }
    }
}

/// Serves until `shutdown` is cancelled.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
}
