//! Secret rotation: `deliver` (handing the new secret to the backup server) and `procedure`
//! (the journaled, crash-safe steps and the scheduled job). The pure decisions (when to
//! rotate, the lifetime to ask for, the backoff) are `domain::plan`.

pub mod deliver;
pub mod procedure;
