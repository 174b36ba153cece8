//! Delivering the alert outbox to every sink, at least once, with backoff; and re-sending
//! active alerts to every Alertmanager so that they stay active while true and expire by
//! themselves if kodo-access stops.

use std::collections::BTreeMap;

use chrono::Utc;

use super::sinks;
use crate::context::Context;
use crate::store;

/// Delivers every due notification. Returns (delivered, failed).
pub async fn deliver_outbox(context: &Context) -> anyhow::Result<(usize, usize)> {
    let settings = &context.settings.alerts;
    let mut delivered = 0;
    let mut failed = 0;
    loop {
        let claimed = {
            let mut connection = context.pool.acquire().await?;
            let lease = Utc::now() + chrono::Duration::seconds(60);
            store::alerts::claim_due(&mut connection, lease, 500).await?
        };
        if claimed.is_empty() {
            return Ok((delivered, failed));
        }
        let mut by_sink: BTreeMap<String, Vec<store::alerts::OutboxRow>> = BTreeMap::new();
        for row in claimed {
            by_sink.entry(row.sink.clone()).or_default().push(row);
        }
        for (sink, rows) in by_sink {
            let ids: Vec<i64> = rows.iter().map(|row| row.id).collect();
            let result = send(context, &sink, &rows).await;
            let mut connection = context.pool.acquire().await?;
            match result {
                Ok(None) => {
                    store::alerts::mark_delivered(&mut connection, &ids, None).await?;
                    crate::telemetry::metrics::delivery(&sink, true, ids.len() as u64);
                    delivered += ids.len();
                }
                Ok(Some(note)) => {
                    tracing::warn!(sink = %sink, count = ids.len(), "dropping notifications: {note}");
                    store::alerts::mark_delivered(&mut connection, &ids, Some(&note)).await?;
                }
                Err(error) => {
                    let attempts =
                        u32::try_from(rows.iter().map(|row| row.attempts).max().unwrap_or(0))
                            .unwrap_or(0)
                            + 1;
                    let backoff =
                        std::time::Duration::from_secs(5u64.saturating_mul(1 << attempts.min(16)))
                            .min(settings.max_delivery_backoff);
                    let next = Utc::now()
                        + chrono::Duration::from_std(backoff)
                            .unwrap_or(chrono::Duration::minutes(5));
                    tracing::warn!(sink = %sink, count = ids.len(), attempt = attempts, retry_in_s = backoff.as_secs(), "alert delivery failed: {error}");
                    store::alerts::mark_failed(&mut connection, &ids, next, &error).await?;
                    crate::telemetry::metrics::delivery(&sink, false, ids.len() as u64);
                    failed += ids.len();
                }
            }
        }
    }
}

/// Sends one sink's batch. `Ok(Some(note))`: nothing to send it to any more (sink removed).
async fn send(
    context: &Context,
    sink: &str,
    rows: &[store::alerts::OutboxRow],
) -> Result<Option<String>, String> {
    let settings = &context.settings.alerts;
    if let Some(name) = sink.strip_prefix("alertmanager:") {
        let Some(target) = settings.alertmanagers.iter().find(|am| am.name == name) else {
            return Ok(Some(format!("sink {sink} is no longer configured")));
        };
        let now = Utc::now();
        let alerts: Vec<serde_json::Value> = rows
            .iter()
            .map(|row| sinks::alertmanager_alert(&row.payload, settings.resend_interval * 4, now))
            .collect();
        sinks::post_alertmanager(&context.http, target, &alerts)
            .await
            .map(|_| None)
    } else if let Some(name) = sink.strip_prefix("webhook:") {
        let Some(target) = settings.webhooks.iter().find(|hook| hook.name == name) else {
            return Ok(Some(format!("sink {sink} is no longer configured")));
        };
        for row in rows {
            sinks::post_webhook(&context.http, target, &row.payload).await?;
        }
        Ok(None)
    } else {
        Ok(Some(format!("unknown sink {sink}")))
    }
}

/// Alerts per request when re-sending to Alertmanager.
const RESEND_BATCH: usize = 500;

/// Re-sends every active alert (of enabled, unsilenced organizations) to every
/// Alertmanager. Returns how many alerts were sent to each.
pub async fn resend_active(context: &Context) -> anyhow::Result<usize> {
    let settings = &context.settings.alerts;
    if settings.alertmanagers.is_empty() {
        return Ok(0);
    }
    let active = {
        let mut connection = context.pool.acquire().await?;
        store::alerts::active(&mut connection).await?
    };
    let now = Utc::now();
    let alerts: Vec<serde_json::Value> = active
        .iter()
        .filter(|alert| alert.organization_enabled && !alert.silenced)
        .map(|alert| {
            let payload = serde_json::json!({
                "status": "firing",
                "labels": alert.labels,
                "annotations": alert.annotations,
                "starts_at": alert.started_at.to_rfc3339(),
            });
            sinks::alertmanager_alert(&payload, settings.resend_interval * 4, now)
        })
        .collect();
    if alerts.is_empty() {
        return Ok(0);
    }
    let mut failures = Vec::new();
    for target in &settings.alertmanagers {
        // Bounded request bodies: a fleet of thousands has tens of thousands of alerts.
        for batch in alerts.chunks(RESEND_BATCH) {
            if let Err(error) = sinks::post_alertmanager(&context.http, target, batch).await {
                crate::telemetry::metrics::delivery(
                    &format!("alertmanager:{}", target.name),
                    false,
                    batch.len() as u64,
                );
                failures.push(error);
                break;
            }
        }
    }
    if !failures.is_empty() {
        anyhow::bail!("re-sending active alerts failed: {}", failures.join("; "));
    }
    Ok(alerts.len())
}
