//! Integration tests: the real binary, a real PostgreSQL (one database per test), real
//! promtool and systemd-analyze. DATABASE_URL must point at a role with CREATEDB
//! (scripts/test sets it).
//!
//! They need the binary's test hooks, so they are built only with `--features failpoints`
//! (`required-features` in Cargo.toml; scripts/test passes it). Plain `cargo test` builds
//! and runs the unit tests.

#![allow(
    clippy::unwrap_used,
    clippy::cast_possible_truncation,
    clippy::cast_possible_wrap,
    clippy::cast_sign_loss,
    clippy::cast_lossless,
    reason = "tests: a failed unwrap is a failed test, and the numbers they cast are small"
)]

mod alertmanager;
mod certificate_formats;
mod certificate_support;
mod certificates;
mod checks;
mod config;
mod daemon;
mod daemon_support;
mod fleet_support;
mod hardening;
mod jobs;
mod manifest;
mod microsoft;
mod organizations;
mod rotation;
mod rotation_faults;
mod rotation_fleet;
mod rotation_kill;
mod rotation_kill_certificate;
mod rotation_refusals;
mod rules;
mod secrets;
mod sim_support;
mod simulator_tls;
mod sink_access;
mod support;
mod systemd;
