//! An organization's state: what its last completed check established, or `unknown` before
//! the first one. Stored as text in `organization_status.state` (and `last_known_state`).

use serde::{Deserialize, Serialize};
use sqlx::postgres::{PgArgumentBuffer, PgTypeInfo, PgValueRef, Postgres};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Not judged yet: the organization was never checked (or its stored state is one this
    /// version does not know). Never the outcome of a check.
    Unknown,
    Healthy,
    Degraded,
    SecretExpiring,
    PermissionsMissing,
    ConsentRevoked,
    SecretInvalid,
    SecretExpired,
    AppMissing,
    AppDisabled,
    TenantNotFound,
    BlockedByPolicy,
    CheckFailed,
}

impl State {
    pub const ALL: [State; 13] = [
        State::Unknown,
        State::Healthy,
        State::Degraded,
        State::SecretExpiring,
        State::PermissionsMissing,
        State::ConsentRevoked,
        State::SecretInvalid,
        State::SecretExpired,
        State::AppMissing,
        State::AppDisabled,
        State::TenantNotFound,
        State::BlockedByPolicy,
        State::CheckFailed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            State::Unknown => "unknown",
            State::Healthy => "healthy",
            State::Degraded => "degraded",
            State::SecretExpiring => "secret_expiring",
            State::PermissionsMissing => "permissions_missing",
            State::ConsentRevoked => "consent_revoked",
            State::SecretInvalid => "secret_invalid",
            State::SecretExpired => "secret_expired",
            State::AppMissing => "app_missing",
            State::AppDisabled => "app_disabled",
            State::TenantNotFound => "tenant_not_found",
            State::BlockedByPolicy => "blocked_by_policy",
            State::CheckFailed => "check_failed",
        }
    }

    pub fn parse(text: &str) -> Option<State> {
        State::ALL.into_iter().find(|state| state.as_str() == text)
    }

    /// States that say access is gone: believed only when a second look agrees.
    pub fn needs_confirmation(self) -> bool {
        matches!(
            self,
            State::ConsentRevoked
                | State::TenantNotFound
                | State::AppMissing
                | State::SecretInvalid
                | State::PermissionsMissing
        )
    }

    /// How bad, for sorting (higher is worse).
    pub fn badness(self) -> u8 {
        match self {
            State::Unknown => 0,
            State::Healthy => 0,
            State::Degraded => 1,
            State::CheckFailed => 2,
            State::SecretExpiring => 3,
            State::PermissionsMissing => 4,
            State::BlockedByPolicy => 5,
            State::ConsentRevoked => 6,
            State::AppDisabled => 7,
            State::SecretInvalid => 8,
            State::SecretExpired => 9,
            State::AppMissing => 10,
            State::TenantNotFound => 11,
        }
    }
}

impl std::fmt::Display for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Stored as its text. A stored word this version does not know (written by a newer one)
/// reads as `Unknown`, so the row still loads and the next check writes a state it knows.
impl sqlx::Type<Postgres> for State {
    fn type_info() -> PgTypeInfo {
        <&str as sqlx::Type<Postgres>>::type_info()
    }

    fn compatible(ty: &PgTypeInfo) -> bool {
        <&str as sqlx::Type<Postgres>>::compatible(ty)
    }
}

impl<'r> sqlx::Decode<'r, Postgres> for State {
    fn decode(value: PgValueRef<'r>) -> Result<Self, sqlx::error::BoxDynError> {
        let text = <&str as sqlx::Decode<Postgres>>::decode(value)?;
        Ok(State::parse(text).unwrap_or(State::Unknown))
    }
}

impl sqlx::Encode<'_, Postgres> for State {
    fn encode_by_ref(
        &self,
        buf: &mut PgArgumentBuffer,
    ) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
        <&str as sqlx::Encode<Postgres>>::encode(self.as_str(), buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_word_this_version_does_not_know_is_no_state() {
        assert_eq!(State::parse("from_a_newer_version"), None);
        assert!(!State::Unknown.needs_confirmation());
    }
}
