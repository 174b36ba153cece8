//! Health checks: what a check observes (`observe`), what that means (`verdict`, pure),
//! which alerts that fires and resolves (`alerting`, pure), and the thin runner that
//! stores results and alerts (`run`).

pub mod alerting;
pub mod observe;
pub mod run;
pub mod verdict;
