//! The only code that speaks to Microsoft: tokens (Entra ID), Graph, the SharePoint
//! probe, error classification, clouds, retries and the permissions manifest.
//!
//! Every URL comes from the organization's cloud (configuration); HTTPS is required
//! except for loopback (the simulator). One shared `reqwest` client with timeouts and a
//! user agent. This module must never log a secret or a token.

pub mod certificate;
pub mod claims;
pub mod cloud;
pub mod errors;
pub mod graph;
pub mod ids;
pub mod permissions;
pub mod pkcs12;
pub mod retry;
pub mod secret_buf;
pub mod token;

use std::sync::Arc;
use std::time::Duration;

pub use certificate::{CertificateError, ClientCertificate, Credential};
pub use cloud::{Endpoints, Resource};
pub use errors::{GraphError, GraphFailure, TokenError, TokenFailure};
pub use graph::Removal;
pub use retry::RetryPolicy;

use std::path::PathBuf;

/// How the client talks to Microsoft (the daemon's `[microsoft]` settings).
#[derive(Debug, Clone)]
pub struct ClientSettings {
    /// At most this many requests in flight, across all organizations.
    pub max_requests_in_flight: usize,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    pub retry: RetryPolicy,
    /// An extra trusted root (a private CA in front of Microsoft, or the simulator's).
    pub ca_file: Option<PathBuf>,
}

/// The counter of requests to Microsoft by kind (`token`, `graph`, `sharepoint`) and
/// outcome (`ok`, `transport` or an error kind), through the `metrics` facade: whoever
/// installs a recorder (the daemon's `/metrics`) exports it.
pub const REQUESTS_METRIC: &str = "kodo_access_microsoft_requests_total";

pub(crate) fn count_request(kind: &'static str, outcome: &'static str) {
    metrics::counter!(REQUESTS_METRIC, "kind" => kind, "outcome" => outcome).increment(1);
}

/// The most of any answer kodo-access reads, from Microsoft or a sink: Microsoft's largest
/// (a page of assignments, a resource's app roles) are far below it. A larger answer is an
/// error, not a reason to grow without bound.
pub const MAX_BODY_BYTES: usize = 4 << 20;

/// Why an answer's body could not be read.
#[derive(Debug)]
pub enum BodyError {
    Transport(reqwest::Error),
    TooLarge,
}

impl std::fmt::Display for BodyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BodyError::Transport(error) => f.write_str(&errors::transport_description(error)),
            BodyError::TooLarge => {
                write!(f, "the answer is larger than {} MiB", MAX_BODY_BYTES >> 20)
            }
        }
    }
}

/// Reads an answer's body as text, at most `limit` bytes: chunk by chunk, so a huge or
/// endless body costs at most the limit. The text may carry a token or a new secret, so
/// it lives in a buffer that is wiped when dropped (`SecretBuf`).
pub async fn read_body(
    mut response: reqwest::Response,
    limit: usize,
) -> Result<zeroize::Zeroizing<String>, BodyError> {
    let length = response.content_length();
    if length.is_some_and(|length| length > limit as u64) {
        return Err(BodyError::TooLarge);
    }
    let mut body = crate::secret_buf::SecretBuf::with_capacity(
        length.map_or(16 << 10, |length| usize::try_from(length).unwrap_or(limit)),
    );
    while let Some(chunk) = response.chunk().await.map_err(BodyError::Transport)? {
        if body.len() + chunk.len() > limit {
            return Err(BodyError::TooLarge);
        }
        body.extend(&chunk);
    }
    Ok(body.into_text())
}

/// The shared HTTP client and the per-tenant caches. Cheap to clone.
#[derive(Clone)]
pub struct MicrosoftClient {
    http: reqwest::Client,
    retry: RetryPolicy,
    app_roles: Arc<graph::AppRoleCache>,
    /// The global limit on requests in flight (`microsoft.max_requests_in_flight`). A
    /// permit is held for one HTTP exchange only, never across a retry's wait, so a
    /// throttled tenant slows only itself.
    in_flight: Arc<tokio::sync::Semaphore>,
}

impl MicrosoftClient {
    pub fn new(settings: &ClientSettings) -> anyhow::Result<MicrosoftClient> {
        let mut builder = reqwest::Client::builder()
            .user_agent(concat!("kodo-access/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(settings.connect_timeout)
            .timeout(settings.request_timeout)
            .pool_idle_timeout(Duration::from_secs(90))
            // Microsoft's token and Graph endpoints never redirect: a redirect would carry
            // the client secret (re-sent with the body on 307/308) or a bearer token to
            // another origin, so none is followed and its status is the error.
            .redirect(reqwest::redirect::Policy::none())
            .https_only(false);
        if let Some(path) = &settings.ca_file {
            let pem = std::fs::read(path).map_err(|error| {
                anyhow::anyhow!("cannot read microsoft.ca_file {}: {error}", path.display())
            })?;
            for certificate in reqwest::Certificate::from_pem_bundle(&pem)? {
                builder = builder.add_root_certificate(certificate);
            }
        }
        Ok(MicrosoftClient {
            http: builder.build()?,
            retry: settings.retry,
            app_roles: Arc::new(graph::AppRoleCache::default()),
            in_flight: Arc::new(tokio::sync::Semaphore::new(settings.max_requests_in_flight)),
        })
    }

    /// Sends one request within the in-flight limit.
    async fn send(&self, request: reqwest::RequestBuilder) -> reqwest::Result<reqwest::Response> {
        let _permit = self
            .in_flight
            .acquire()
            .await
            .expect("the semaphore is never closed");
        request.send().await
    }

    /// The same client with another retry policy (e.g. none, to observe one answer).
    pub fn with_retry(&self, retry: RetryPolicy) -> MicrosoftClient {
        MicrosoftClient {
            retry,
            ..self.clone()
        }
    }
}
