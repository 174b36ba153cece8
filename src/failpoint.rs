//! Test hooks at the steps of a rotation, so the tests can kill the daemon right before and
//! right after each one (issue 5's "kill -9 at every step"). They exist only in builds with
//! the `failpoints` feature (the tests'); elsewhere `hit` does nothing.
//!
//! A test arms a hook through the `fail` crate's `FAILPOINTS` environment variable, e.g.
//! `FAILPOINTS=rotation-after-added=return`: the process then says `failpoint NAME reached`
//! on standard error when it gets there and waits, doing nothing more, to be killed.
//! `return(MS)` pauses there instead, and `1*return(MS)` only the first time.

/// Every hook, in the order a rotation passes them. `before-X` is right before the action of
/// step X (the call to Microsoft, the delivery, the database write); `after-X` right after
/// it, before it is recorded.
pub const ROTATION: &[&str] = &[
    "rotation-before-intent",
    "rotation-after-intent",
    "rotation-before-added",
    "rotation-after-added",
    "rotation-before-verified",
    "rotation-after-verified",
    "rotation-before-delivered",
    "rotation-after-delivered",
    "rotation-before-activated",
    "rotation-after-activated",
    "rotation-before-removed",
    "rotation-after-removed",
];

/// Right after a command started (the process has set itself non-dumpable): lets a test
/// hold any command still, to look at the running process.
pub const COMMAND_STARTED: &str = "command-started";

/// Stops here for good when the tests armed `name` (`NAME=return`), or pauses that many
/// milliseconds and goes on (`NAME=return(3000)`, e.g. to break the database meanwhile).
pub async fn hit(name: &'static str) {
    debug_assert!(
        ROTATION.contains(&name) || name == COMMAND_STARTED,
        "unknown failpoint {name}"
    );
    #[cfg(feature = "failpoints")]
    if let Some(pause) = fail::eval(name, |argument| argument) {
        eprintln!("failpoint {name} reached");
        match pause.and_then(|ms| ms.parse::<u64>().ok()) {
            Some(ms) => tokio::time::sleep(std::time::Duration::from_millis(ms)).await,
            None => std::future::pending::<()>().await,
        }
    }
}

/// Reads `FAILPOINTS` (feature `failpoints` only); keep the guard for the process's life.
#[cfg(feature = "failpoints")]
pub fn setup() -> fail::FailScenario<'static> {
    fail::FailScenario::setup()
}
