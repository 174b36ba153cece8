//! kodo-access keeps Microsoft 365 app access alive across many customer tenants.
//! See ARCHITECTURE.md for the map of this crate.

pub mod alerts;
pub mod app;
pub mod checks;
pub mod cli;
pub mod config;
pub mod context;
pub mod crypto;
pub mod domain;
pub mod failpoint;
pub mod health;
pub mod http;
pub mod jobs;
// The Microsoft client is its own crate (crates/microsoft), which depends on nothing of
// ours; this name keeps its paths short.
pub use kodo_microsoft as microsoft;
pub mod notify;
pub mod registry;
pub mod rotation;
pub mod scheduler;
pub use kodo_microsoft::secret_buf;
pub mod sink_http;
pub mod store;
pub mod target;
pub mod telemetry;
