//! The rotation journal's vocabulary: its steps, in order. Stored as text in
//! `rotations.step` (a CHECK constraint holds the same list).

use std::fmt;

/// A rotation's step: what was last recorded as done.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RotationStep {
    /// Begun: nothing created at Microsoft yet (or only what carries the rotation's name).
    Intent,
    /// The new secret exists at Microsoft and is stored sealed.
    Added,
    /// The new secret got a token for every resource the organization is checked on.
    Verified,
    /// Every deliverer has the new secret.
    Delivered,
    /// The new secret is the current one; the old one waits out the grace period.
    Activated,
    /// Done (succeeded, failed for good or abandoned: see the outcome).
    Finished,
}

impl RotationStep {
    pub const ALL: [RotationStep; 6] = [
        RotationStep::Intent,
        RotationStep::Added,
        RotationStep::Verified,
        RotationStep::Delivered,
        RotationStep::Activated,
        RotationStep::Finished,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RotationStep::Intent => "intent",
            RotationStep::Added => "added",
            RotationStep::Verified => "verified",
            RotationStep::Delivered => "delivered",
            RotationStep::Activated => "activated",
            RotationStep::Finished => "finished",
        }
    }

    pub fn parse(step: &str) -> Option<RotationStep> {
        RotationStep::ALL
            .into_iter()
            .find(|candidate| candidate.as_str() == step)
    }
}

impl fmt::Display for RotationStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A row's `step` column read into the type (`#[sqlx(try_from = "String")]`).
impl TryFrom<String> for RotationStep {
    type Error = String;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        RotationStep::parse(&value).ok_or_else(|| format!("unknown rotation step {value:?}"))
    }
}

/// Why a rotation attempt failed, as recorded and as the alerts name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureReason {
    /// Graph answered 403 to a secret change: no Application.ReadWrite.OwnedBy, or the app
    /// does not own itself.
    NotAuthorized,
    /// The tenant's app-management policy allows no client secrets.
    SecretsNotAllowed,
    /// The policy refused even the shortest lifetime tried.
    LifetimePolicy,
    /// The current secret no longer gets tokens, consent is gone, or the app is gone: the
    /// checks say which.
    AccessLost,
    /// The new secret still failed when the verification limit ran out, or failed in a way
    /// that waiting does not change.
    NotVerified,
    /// A deliverer failed; the new secret does not become current until all succeed.
    DeliveryFailed,
    /// Throttling or a Microsoft outage outlasted the retries.
    MicrosoftUnavailable,
    Failed,
}

impl FailureReason {
    pub fn as_str(self) -> &'static str {
        match self {
            FailureReason::NotAuthorized => "not_authorized",
            FailureReason::SecretsNotAllowed => "secrets_not_allowed",
            FailureReason::LifetimePolicy => "lifetime_policy",
            FailureReason::AccessLost => "access_lost",
            FailureReason::NotVerified => "not_verified",
            FailureReason::DeliveryFailed => "delivery_failed",
            FailureReason::MicrosoftUnavailable => "microsoft_unavailable",
            FailureReason::Failed => "failed",
        }
    }

    pub const ALL: [FailureReason; 8] = [
        FailureReason::NotAuthorized,
        FailureReason::SecretsNotAllowed,
        FailureReason::LifetimePolicy,
        FailureReason::AccessLost,
        FailureReason::NotVerified,
        FailureReason::DeliveryFailed,
        FailureReason::MicrosoftUnavailable,
        FailureReason::Failed,
    ];

    /// A stored reason; one this version does not know reads as `Failed`.
    pub fn parse(reason: &str) -> FailureReason {
        FailureReason::ALL
            .into_iter()
            .find(|candidate| candidate.as_str() == reason)
            .unwrap_or(FailureReason::Failed)
    }
}

impl fmt::Display for FailureReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_round_trip_and_match_the_schema_constraint() {
        for step in RotationStep::ALL {
            assert_eq!(RotationStep::parse(step.as_str()), Some(step));
        }
        assert_eq!(RotationStep::parse("not_due"), None);
        for reason in FailureReason::ALL {
            assert_eq!(FailureReason::parse(reason.as_str()), reason);
        }
        // The migration's CHECK lists the same words in the same order.
        let migration =
            include_str!("../../migrations/20261201000009_drop_dead_columns_and_check_steps.sql");
        let listed = RotationStep::ALL
            .iter()
            .map(|step| format!("'{step}'"))
            .collect::<Vec<_>>()
            .join(", ");
        assert!(
            migration.contains(&format!("step IN ({listed})")),
            "{listed}"
        );
    }
}
