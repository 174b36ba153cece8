//! Where alert notifications go: Prometheus Alertmanager (API v2) and signed webhooks.
//! Each function sends one batch and says whether it was accepted; retries, backoff and
//! bookkeeping are the delivery job's.

use std::time::Duration;

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;

use crate::config::{AlertmanagerSink, WebhookSink};

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

pub const SIGNATURE_HEADER: &str = "X-Kodo-Access-Signature";
pub const TIMESTAMP_HEADER: &str = "X-Kodo-Access-Timestamp";
/// `alert` or `credential`: what the body is, signed so that one cannot pass for the other.
pub const PURPOSE_HEADER: &str = "X-Kodo-Access-Purpose";
/// A fresh id per delivery, signed: a receiver that remembers the ids it saw within the
/// replay window (5 minutes of timestamps) refuses a replay.
pub const DELIVERY_HEADER: &str = "X-Kodo-Access-Delivery";

/// What a signed webhook carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    Alert,
    Credential,
}

impl Purpose {
    pub fn as_str(self) -> &'static str {
        match self {
            Purpose::Alert => "alert",
            Purpose::Credential => "credential",
        }
    }
}

/// `sha256=HEX(HMAC-SHA256(key, "TIMESTAMP.PURPOSE.DELIVERY.BODY"))`: the timestamp, the
/// purpose and the delivery id are signed with the body, so a receiver that rejects old
/// timestamps and delivery ids it has seen cannot be fooled by a replay, and an alert
/// cannot be passed off as a credential.
pub fn signature(
    key: &SecretString,
    timestamp: i64,
    purpose: Purpose,
    delivery: uuid::Uuid,
    body: &[u8],
) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key.expose_secret().as_bytes())
        .expect("HMAC takes any key length");
    mac.update(format!("{timestamp}.{}.{delivery}.", purpose.as_str()).as_bytes());
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    format!(
        "sha256={}",
        digest
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    )
}

/// The signing headers of one delivery.
pub fn signed(
    request: reqwest::RequestBuilder,
    key: &SecretString,
    purpose: Purpose,
    body: &[u8],
) -> reqwest::RequestBuilder {
    let timestamp = Utc::now().timestamp();
    let delivery = uuid::Uuid::new_v4();
    request
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header(TIMESTAMP_HEADER, timestamp.to_string())
        .header(PURPOSE_HEADER, purpose.as_str())
        .header(DELIVERY_HEADER, delivery.to_string())
        .header(
            SIGNATURE_HEADER,
            signature(key, timestamp, purpose, delivery, body),
        )
}

/// The shortest HMAC key accepted for signing (SHA-256's block of strength).
pub const MIN_SIGNING_KEY_BYTES: usize = 32;

/// Reads a webhook's signing key, refusing one too short to resist guessing.
pub fn signing_key(source: &crate::config::SecretSource) -> Result<SecretString, String> {
    let key = source.read().map_err(|error| error.to_string())?;
    if key.expose_secret().len() < MIN_SIGNING_KEY_BYTES {
        return Err(format!(
            "the signing key ({source}) is shorter than {MIN_SIGNING_KEY_BYTES} bytes: make one with `openssl rand -hex 32`"
        ));
    }
    Ok(key)
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
    fn signatures_cover_timestamp_purpose_delivery_and_body() {
        let key = SecretString::from("k".repeat(32));
        let delivery = uuid::Uuid::new_v4();
        let sign = |key: &SecretString, timestamp, purpose, delivery, body: &[u8]| {
            signature(key, timestamp, purpose, delivery, body)
        };
        let a = sign(&key, 1, Purpose::Alert, delivery, b"{}");
        assert!(a.starts_with("sha256=") && a.len() == 7 + 64);
        assert_ne!(a, sign(&key, 2, Purpose::Alert, delivery, b"{}"));
        assert_ne!(a, sign(&key, 1, Purpose::Credential, delivery, b"{}"));
        assert_ne!(
            a,
            sign(&key, 1, Purpose::Alert, uuid::Uuid::new_v4(), b"{}")
        );
        assert_ne!(a, sign(&key, 1, Purpose::Alert, delivery, b"{ }"));
        assert_ne!(
            a,
            sign(
                &SecretString::from("other"),
                1,
                Purpose::Alert,
                delivery,
                b"{}"
            )
        );
    }

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
