//! kodo-access keeps Microsoft 365 app access alive across many customer tenants.
//! See ARCHITECTURE.md for the map of this crate.

pub mod alerts;
pub mod app;
#[cfg(feature = "simulator")]
pub mod bench;
pub mod checks;
pub mod cli;
pub mod config;
pub mod context;
pub mod crypto;
#[cfg(feature = "simulator")]
pub mod demo;
pub mod domain;
pub mod failpoint;
pub mod health;
pub mod http;
pub mod jobs;
pub mod microsoft;
pub mod notify;
pub mod registry;
pub mod rotation;
pub mod scheduler;
pub mod secret_buf;
pub mod sink_http;
// The simulated cloud, the demo and the benchmarks: feature `simulator` (on by default, off
// in the production build, so the daemon an operator installs cannot serve `/_sim/`).
#[cfg(feature = "simulator")]
pub mod simulator;
pub mod store;
pub mod telemetry;
