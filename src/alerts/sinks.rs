//! Where alert notifications go: Prometheus Alertmanager (API v2) and signed webhooks.
//! Each function sends one batch and says whether it was accepted; retries, backoff and
//! bookkeeping are the delivery job's.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::config::{AlertmanagerSink, WebhookSink};
use crate::sink_http::{Purpose, signed, signing_key};

/// One outbox payload as an Alertmanager v2 `postableAlert`. Firing alerts carry an
/// `endsAt` `ends_in` ahead, so Alertmanager resolves them itself if kodo-access dies.
pub fn alertmanager_alert(
    payload: &serde_json::Value,
    ends_in: Duration,
    now: DateTime<Utc>,
) -> serde_json::Value {
    let firing = payload["status"] == "firing";
    let ends_at = if firing {
        (now + chrono::Duration::from_std(ends_in).unwrap_or(chrono::Duration::minutes(4)))
            .to_rfc3339()
    } else {
        payload["ends_at"]
            .as_str()
            .map(String::from)
            .unwrap_or_else(|| now.to_rfc3339())
    };
    serde_json::json!({
        "labels": payload["labels"],
        "annotations": payload["annotations"],
        "startsAt": payload["starts_at"],
        "endsAt": ends_at,
    })
}

pub async fn post_alertmanager(
    http: &reqwest::Client,
    sink: &AlertmanagerSink,
    alerts: &[serde_json::Value],
) -> Result<(), String> {
    let url = sink
        .url
        .join("api/v2/alerts")
        .map_err(|error| error.to_string())?;
    let response = sink
        .access
        .post(http, url)
        .map_err(|error| format!("alertmanager {}: {error}", sink.name))?
        .json(alerts)
        .send()
        .await
        .map_err(|error| {
            format!(
                "alertmanager {}: {}",
                sink.name,
                crate::microsoft::errors::transport_description(&error)
            )
        })?;
    let status = response.status();
    if status.is_success() {
        Ok(())
    } else {
        let body: String = crate::microsoft::read_body(response, 64 << 10)
            .await
            .unwrap_or_else(|error| zeroize::Zeroizing::new(format!("({error})")))
            .chars()
            .take(300)
            .collect();
        Err(format!(
            "alertmanager {} answered {status}: {body}",
            sink.name
        ))
    }
}

pub async fn post_webhook(
    http: &reqwest::Client,
    sink: &WebhookSink,
    payload: &serde_json::Value,
) -> Result<(), String> {
    let secret =
        signing_key(&sink.secret).map_err(|error| format!("webhook {}: {error}", sink.name))?;
    let body = serde_json::to_vec(payload).map_err(|error| error.to_string())?;
    let request = sink
        .access
        .post(http, sink.url.clone())
        .map_err(|error| format!("webhook {}: {error}", sink.name))?;
    let response = signed(request, &secret, Purpose::Alert, &body)
        .body(body)
        .send()
        .await
        .map_err(|error| {
            format!(
                "webhook {}: {}",
                sink.name,
                crate::microsoft::errors::transport_description(&error)
            )
        })?;
    if response.status().is_success() {
        Ok(())
    } else {
        Err(format!(
            "webhook {} answered {}",
            sink.name,
            response.status()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolved_alerts_end_in_the_past_and_firing_ones_ahead() {
        let now = Utc::now();
        let firing = alertmanager_alert(
            &serde_json::json!({"status": "firing", "labels": {}, "annotations": {}, "starts_at": "2026-01-01T00:00:00Z"}),
            Duration::from_secs(240),
            now,
        );
        let ends: DateTime<Utc> = firing["endsAt"].as_str().unwrap().parse().unwrap();
        assert!(ends > now + chrono::Duration::seconds(230));
        let resolved = alertmanager_alert(
            &serde_json::json!({"status": "resolved", "ends_at": "2026-01-01T01:00:00Z"}),
            Duration::from_secs(240),
            now,
        );
        assert_eq!(resolved["endsAt"], "2026-01-01T01:00:00Z");
    }
}
