//! Integration tests: the real binary, a real PostgreSQL (one database per test), real
//! promtool and systemd-analyze. DATABASE_URL must point at a role with CREATEDB
//! (scripts/test sets it).
//!
//! They need the binary's test hooks: `cargo test --features failpoints` (scripts/test).

#[cfg(not(feature = "failpoints"))]
compile_error!(
    "the integration tests kill the daemon at its failpoints: run them with `cargo test --features failpoints` (scripts/test does)"
);

mod alertmanager;
mod checks;
mod config;
mod daemon;
mod daemon_support;
mod fleet_support;
mod hardening;
mod jobs;
mod microsoft;
mod msal;
mod organizations;
mod rotation;
mod rotation_faults;
mod rotation_fleet;
mod rotation_kill;
mod rotation_refusals;
mod rules;
mod secrets;
mod sim_support;
mod sink_access;
mod support;
mod systemd;
