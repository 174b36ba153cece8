//! Alerts on their way out: the sinks (`sinks`), and the delivery of the outbox and the
//! periodic re-send to Alertmanager (`delivery`). Which alerts fire and resolve is the
//! checks' (`checks::alerting`); the outbox between them is in the store.

pub mod delivery;
pub mod sinks;
