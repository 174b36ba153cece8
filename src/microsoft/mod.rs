//! The only code that speaks to Microsoft: tokens (Entra ID), Graph, the SharePoint
//! probe, error classification, clouds, retries and the permissions manifest.
//!
//! Every URL comes from the organization's cloud (configuration); HTTPS is required
//! except for loopback (the simulator). One shared `reqwest` client with timeouts and a
//! user agent. This module must never log a secret or a token.

pub mod claims;
pub mod cloud;
pub mod errors;
pub mod graph;
pub mod permissions;
pub mod retry;
pub mod token;

use std::sync::Arc;
use std::time::Duration;

pub use cloud::{Endpoints, Resource};
pub use errors::{GraphError, GraphFailure, TokenError, TokenFailure};
pub use graph::Removal;
pub use retry::RetryPolicy;

use crate::config::MicrosoftSettings;

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
    pub fn new(settings: &MicrosoftSettings) -> anyhow::Result<MicrosoftClient> {
        let mut builder = reqwest::Client::builder()
            .user_agent(concat!("kodo-access/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(settings.connect_timeout)
            .timeout(settings.request_timeout)
            .pool_idle_timeout(Duration::from_secs(90))
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
