//! The one context object handed to every job and request handler.

use std::sync::Arc;

use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::config::Settings;
use crate::crypto::Keyring;
use crate::health::Readiness;

#[derive(Clone)]
pub struct Context {
    pub settings: Arc<Settings>,
    pub pool: PgPool,
    pub keyring: Arc<Keyring>,
    pub readiness: Arc<Readiness>,
    /// Cancelled when the daemon is asked to stop; long work checks it between items.
    pub shutdown: CancellationToken,
}
