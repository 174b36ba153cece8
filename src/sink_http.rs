//! How kodo-access reaches an HTTP sink (an Alertmanager, an alert webhook, a rotation
//! webhook): one client policy for all (timeouts, no redirects), and each sink's own
//! authentication (basic auth or a bearer token) and TLS (a CA to trust instead of the
//! built-in roots, a client certificate for mutual TLS).
//!
//! Every secret (password, token, client key) is read when a request is built, so a file
//! or credential replaced on disk is used from the next delivery on, without a restart;
//! a sink with its own TLS settings gets a client built for that delivery, for the same
//! reason (a renewed client certificate is picked up).
//!
//! And how a webhook (an alert's or a rotation's) is signed: one scheme for both, each
//! signature bound to its purpose.

use std::time::Duration;

use chrono::Utc;
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;

/// The client every sink request goes through, apart from its TLS settings.
pub fn client_builder() -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .user_agent(concat!("kodo-access/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(15))
        // A sink or webhook that redirects would carry an alert or a new secret to an
        // origin nobody configured: never followed, the redirect is the error.
        .redirect(reqwest::redirect::Policy::none())
}

/// A sink's authentication and TLS settings are configuration data; this module uses them.
pub use crate::config::{ClientCertificate, SinkAccess, SinkAuth, SinkTls};

impl SinkAccess {
    /// A POST to `url` as this sink: through `shared` unless the sink has its own TLS
    /// settings, with its authentication header (marked sensitive).
    pub fn post(
        &self,
        shared: &reqwest::Client,
        url: url::Url,
    ) -> Result<reqwest::RequestBuilder, String> {
        let request = match &self.tls {
            None => shared.post(url),
            Some(tls) => tls.client()?.post(url),
        };
        Ok(match &self.auth {
            None => request,
            Some(SinkAuth::Basic { username, password }) => {
                let password = password.read().map_err(|error| error.to_string())?;
                request.basic_auth(username, Some(password.expose_secret()))
            }
            Some(SinkAuth::Bearer { token }) => {
                let token = token.read().map_err(|error| error.to_string())?;
                request.bearer_auth(token.expose_secret())
            }
        })
    }

    /// Reads every secret and file this sink needs, as a delivery would (`config check`).
    pub fn check(&self) -> Result<(), String> {
        match &self.auth {
            None => {}
            Some(SinkAuth::Basic { password, .. }) => {
                password.read().map_err(|error| error.to_string())?;
            }
            Some(SinkAuth::Bearer { token }) => {
                token.read().map_err(|error| error.to_string())?;
            }
        }
        if let Some(tls) = &self.tls {
            tls.client()?;
        }
        Ok(())
    }
}

impl SinkTls {
    fn client(&self) -> Result<reqwest::Client, String> {
        let mut builder = client_builder();
        if let Some(path) = &self.ca_file {
            let pem = std::fs::read(path)
                .map_err(|error| format!("cannot read CA file {}: {error}", path.display()))?;
            let certificates = reqwest::Certificate::from_pem_bundle(&pem)
                .ok()
                .filter(|certificates| !certificates.is_empty())
                .ok_or_else(|| format!("CA file {} holds no PEM certificate", path.display()))?;
            builder = builder.tls_certs_only(certificates);
        }
        if let Some(client) = &self.client_certificate {
            let certificate = std::fs::read(&client.certificate_file).map_err(|error| {
                format!(
                    "cannot read client certificate {}: {error}",
                    client.certificate_file.display()
                )
            })?;
            let key = client.key.read().map_err(|error| error.to_string())?;
            let mut pem = crate::secret_buf::SecretBuf::with_capacity(
                certificate.len() + key.expose_secret().len() + 2,
            );
            pem.extend(&certificate);
            pem.extend(b"\n");
            pem.extend(key.expose_secret().as_bytes());
            // The error names the files, never what they hold.
            let identity = reqwest::Identity::from_pem(pem.as_bytes()).map_err(|_| {
                format!(
                    "client certificate {} and key ({}) are not a PEM certificate and private key",
                    client.certificate_file.display(),
                    client.key
                )
            })?;
            builder = builder.identity(identity);
        }
        builder
            .build()
            .map_err(|error| format!("cannot set up TLS for the sink: {error}"))
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
}
