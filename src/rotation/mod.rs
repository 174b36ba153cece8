//! Secret rotation (issue 5): `plan` (pure: when to rotate, the lifetime to ask for, the
//! backoff), `deliver` (handing the new secret to the backup server) and `procedure` (the
//! journaled, crash-safe steps and the scheduled job).

pub mod deliver;
pub mod plan;
pub mod procedure;
