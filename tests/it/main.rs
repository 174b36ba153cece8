//! Integration tests: the real binary, a real PostgreSQL (one database per test), real
//! promtool and systemd-analyze. DATABASE_URL must point at a role with CREATEDB
//! (scripts/test sets it).

mod alertmanager;
mod checks;
mod config;
mod daemon;
mod daemon_support;
mod jobs;
mod microsoft;
mod msal;
mod organizations;
mod rotation;
mod rules;
mod secrets;
mod sim_support;
mod support;
mod systemd;
