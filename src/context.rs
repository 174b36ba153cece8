//! The one context object handed to every job and request handler.

use std::sync::Arc;

use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::config::Settings;
use crate::crypto::Keyring;
use crate::health::Readiness;
use crate::microsoft::MicrosoftClient;

#[derive(Clone)]
pub struct Context {
    pub settings: Arc<Settings>,
    pub pool: PgPool,
    pub keyring: Arc<Keyring>,
    pub readiness: Arc<Readiness>,
    /// The only client that talks to Microsoft (shared: one connection pool, one
    /// in-flight limit, one app-role cache).
    pub microsoft: MicrosoftClient,
    /// For alert sinks (Alertmanager, webhooks).
    pub http: reqwest::Client,
    /// Cancelled when the daemon is asked to stop; long work checks it between items.
    pub shutdown: CancellationToken,
    /// Rotations holding their lock at once: each holds two database connections, so at
    /// most half the pool.
    pub rotation_slots: Arc<tokio::sync::Semaphore>,
}

impl Context {
    /// Opens a stored secret of an organization (the seal binds it to organization and
    /// credential), for the check and the rotation alike.
    pub fn open_secret(
        &self,
        organization_id: crate::domain::OrganizationId,
        credential_id: crate::domain::CredentialId,
        seal_key_id: &str,
        sealed: &[u8],
    ) -> Result<secrecy::SecretString, String> {
        self.keyring
            .open(
                &crate::crypto::Sealed {
                    key_id: seal_key_id.to_string(),
                    blob: sealed.to_vec(),
                },
                crate::crypto::SealContext {
                    organization_id,
                    credential_id,
                },
            )
            .map_err(|error| format!("the stored secret {error}"))
    }

    pub fn new(
        settings: Arc<Settings>,
        pool: PgPool,
        keyring: Arc<Keyring>,
        shutdown: CancellationToken,
    ) -> anyhow::Result<Context> {
        let microsoft = MicrosoftClient::new(&settings.microsoft.client)?;
        let http = crate::sink_http::client_builder().build()?;
        let rotation_slots = Arc::new(tokio::sync::Semaphore::new(
            (settings.database.max_connections as usize / 2).max(1),
        ));
        Ok(Context {
            settings,
            pool,
            keyring,
            readiness: Arc::new(Readiness::default()),
            microsoft,
            http,
            rotation_slots,
            shutdown,
        })
    }
}
