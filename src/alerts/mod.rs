//! Alerts: the lifecycle (pure, `lifecycle`), the sinks (`sinks`), and the delivery of the
//! outbox and the periodic re-send to Alertmanager (`delivery`).

pub mod delivery;
pub mod lifecycle;
pub mod sinks;
