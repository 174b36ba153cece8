//! Identifiers and rules as types: parsed once at the edge, valid from then on.
//!
//! No IO here. Each newtype has a private field and `parse` as its only constructor,
//! so a `TenantId` or an `OrgName` in the rest of the code is known to be valid.

use std::collections::BTreeMap;
use std::fmt;

use uuid::Uuid;

pub mod credential;
pub mod findings;
pub mod ids;
pub mod plan;
pub mod rotation;
pub mod settings;
pub mod state;

pub use credential::{CredentialKind, CredentialOrigin, CredentialStatus};
pub use findings::{FindingKind, Severity};
pub use ids::{CredentialId, OrganizationId, RotationId};

/// A duration in whole milliseconds, for log fields (saturating, never wrapping).
pub fn millis(duration: std::time::Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}
pub use rotation::RotationStep;
pub use settings::{OrganizationSettings, SettingsPatch};
pub use state::State;

pub use kodo_microsoft::ids::{
    ClientId, ClientSecret, InputError, SecretKeyId, SharePointHost, TenantId, input_error,
};

/// An organization's name: what operators type and what alerts show.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OrgName(String);

impl OrgName {
    pub fn parse(value: &str) -> Result<Self, InputError> {
        let valid_chars = value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        let starts_well = value
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric());
        if value.is_empty() || value.len() > 64 || !valid_chars || !starts_well {
            return Err(input_error(format!(
                "invalid organization name {value:?}: use 1 to 64 letters, digits, '-', '_' or '.', starting with a letter or digit"
            )));
        }
        if Uuid::try_parse(value).is_ok() {
            return Err(input_error(format!(
                "invalid organization name {value:?}: a name cannot look like an id"
            )));
        }
        Ok(Self(value.to_string()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for OrgName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// How the operator names an organization on the command line: its name or its id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OrgRef {
    Id(Uuid),
    Name(String),
}

impl OrgRef {
    pub fn parse(value: &str) -> OrgRef {
        match Uuid::try_parse(value.trim()) {
            Ok(id) => OrgRef::Id(id),
            Err(_) => OrgRef::Name(value.to_string()),
        }
    }
}

impl fmt::Display for OrgRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OrgRef::Id(id) => write!(f, "{id}"),
            OrgRef::Name(name) => f.write_str(name),
        }
    }
}

pub fn is_valid_cloud_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 32
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && name.chars().next().is_some_and(|c| c.is_ascii_lowercase())
}

/// The name of a configured Microsoft cloud (`global`, `usgov`, … or one from `[clouds]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloudName(String);

impl CloudName {
    /// `known` are the clouds the configuration defines.
    pub fn parse<'a>(
        value: &str,
        known: impl IntoIterator<Item = &'a String>,
    ) -> Result<Self, InputError> {
        let known: Vec<&String> = known.into_iter().collect();
        if known.iter().any(|name| name.as_str() == value) {
            return Ok(Self(value.to_string()));
        }
        let names: Vec<&str> = known.iter().map(|name| name.as_str()).collect();
        Err(input_error(format!(
            "unknown cloud {value:?}: expected one of {}",
            names.join(", ")
        )))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
    /// For values read back from the database, which were validated when written.
    pub fn from_stored(value: String) -> Self {
        Self(value)
    }
}

/// Operator-chosen `key=value` tags on an organization (shown in alerts and listings).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Labels(BTreeMap<String, String>);

impl Labels {
    pub fn parse_pairs<'a>(pairs: impl IntoIterator<Item = &'a str>) -> Result<Self, InputError> {
        let mut labels = BTreeMap::new();
        for pair in pairs {
            let (key, value) = pair.split_once('=').ok_or_else(|| {
                input_error(format!("invalid label {pair:?}: expected key=value"))
            })?;
            Self::check(key, value)?;
            if labels.insert(key.to_string(), value.to_string()).is_some() {
                return Err(input_error(format!("label {key:?} is given twice")));
            }
        }
        Ok(Self(labels))
    }

    pub fn from_map(map: BTreeMap<String, String>) -> Result<Self, InputError> {
        for (key, value) in &map {
            Self::check(key, value)?;
        }
        Ok(Self(map))
    }

    fn check(key: &str, value: &str) -> Result<(), InputError> {
        let key_ok = !key.is_empty()
            && key.len() <= 64
            && key
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
            && key
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if !key_ok {
            return Err(input_error(format!(
                "invalid label key {key:?}: use lowercase letters, digits and '_', starting with a letter"
            )));
        }
        if value.is_empty() || value.len() > 256 || value.chars().any(char::is_control) {
            return Err(input_error(format!(
                "invalid value for label {key:?}: expected 1 to 256 printable characters"
            )));
        }
        Ok(())
    }

    pub fn as_map(&self) -> &BTreeMap<String, String> {
        &self.0
    }

    pub fn to_display(&self) -> String {
        self.0
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(OrgName::parse("contoso-eu.prod_1").is_ok());
        for bad in [
            "",
            "-x",
            "has space",
            "ä",
            &"x".repeat(65),
            "72f988bf-86f1-41af-91ab-2d7cd011db47",
        ] {
            assert!(OrgName::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn labels() {
        let labels = Labels::parse_pairs(["env=prod", "customer_no=42"]).unwrap();
        assert_eq!(labels.to_display(), "customer_no=42,env=prod");
        assert!(Labels::parse_pairs(["novalue"]).is_err());
        assert!(Labels::parse_pairs(["Env=prod"]).is_err());
        assert!(Labels::parse_pairs(["env="]).is_err());
        assert!(Labels::parse_pairs(["env=a", "env=b"]).is_err());
    }
}
