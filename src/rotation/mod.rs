//! Secret rotation (issue 5). So far only the pure plan: whether and when to rotate, the
//! lifetime to ask for, the backoff after failures. The journaled procedure comes next.

pub mod deliver;
pub mod plan;
pub mod procedure;
