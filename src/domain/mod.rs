//! Identifiers and rules as types: parsed once at the edge, valid from then on.
//!
//! No IO here. Each newtype has a private field and `parse` as its only constructor,
//! so a `TenantId` or an `OrgName` in the rest of the code is known to be valid.

use std::collections::BTreeMap;
use std::fmt;

use secrecy::{ExposeSecret, SecretString};
use uuid::Uuid;

/// Bad input from the operator (a flag, a row of an import file): exit status 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct InputError(pub String);

pub fn input_error(message: impl Into<String>) -> InputError {
    InputError(message.into())
}

fn parse_guid(what: &str, value: &str) -> Result<Uuid, InputError> {
    let trimmed = value.trim();
    // Entra shows ids as hyphenated GUIDs; accept exactly that form (any case).
    let parsed = (trimmed.len() == 36)
        .then(|| Uuid::try_parse(trimmed).ok())
        .flatten()
        .filter(|uuid| !uuid.is_nil());
    // The value is not echoed: what was pasted into an id field may well be a secret.
    parsed.ok_or_else(|| {
        input_error(format!(
            "invalid {what} ({} characters given): expected a GUID like 00000000-0000-0000-0000-000000000000",
            trimmed.chars().count()
        ))
    })
}

macro_rules! guid_newtype {
    ($name:ident, $what:literal) => {
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(Uuid);

        impl $name {
            pub fn parse(value: &str) -> Result<Self, InputError> {
                parse_guid($what, value).map(Self)
            }
            pub fn from_uuid(value: Uuid) -> Self {
                Self(value)
            }
            pub fn as_uuid(&self) -> Uuid {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}", self.0.hyphenated())
            }
        }
    };
}

guid_newtype!(TenantId, "tenant id");
guid_newtype!(ClientId, "client id");
guid_newtype!(SecretKeyId, "secret id");

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

/// The tenant's SharePoint Online host, e.g. `contoso.sharepoint.com`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharePointHost(String);

impl SharePointHost {
    pub fn parse(value: &str) -> Result<Self, InputError> {
        let host = value.trim().to_ascii_lowercase();
        let labels_ok = host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        });
        if host.is_empty() || host.len() > 253 || !host.contains('.') || !labels_ok {
            return Err(input_error(format!(
                "invalid SharePoint host {value:?}: expected a host name like contoso.sharepoint.com (no scheme, no path)"
            )));
        }
        Ok(Self(host))
    }
    pub fn as_str(&self) -> &str {
        &self.0
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

/// An application client secret as the operator hands it over. Kept secret in memory;
/// [`ClientSecret::hint`] is the part Microsoft itself shows (its first three characters).
pub struct ClientSecret(SecretString);

impl fmt::Debug for ClientSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClientSecret([REDACTED])")
    }
}

impl ClientSecret {
    /// `text` has already had one trailing newline removed by whoever read it.
    pub fn parse(text: SecretString) -> Result<Self, InputError> {
        let value = text.expose_secret();
        if value.trim().is_empty() {
            return Err(input_error("the client secret is empty"));
        }
        if value.len() > 1024 {
            return Err(input_error(
                "the client secret is longer than 1024 characters",
            ));
        }
        if value.chars().any(|c| c.is_control() || c.is_whitespace()) {
            // Never echo the value: say only what is wrong with it.
            return Err(input_error(
                "the client secret contains whitespace or control characters (paste only the secret's Value, one line)",
            ));
        }
        Ok(Self(text))
    }

    pub fn hint(&self) -> String {
        self.0.expose_secret().chars().take(3).collect()
    }

    pub fn secret(&self) -> &SecretString {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guids_must_be_hyphenated_and_not_nil() {
        assert!(TenantId::parse("72F988BF-86F1-41AF-91AB-2D7CD011DB47").is_ok());
        for bad in [
            "",
            "72f988bf86f141af91ab2d7cd011db47",
            "not-a-guid",
            "00000000-0000-0000-0000-000000000000",
            "{72f988bf-86f1-41af-91ab-2d7cd011db47}",
        ] {
            let error = TenantId::parse(bad).unwrap_err().to_string();
            assert!(error.contains("invalid tenant id"), "{bad}: {error}");
        }
        assert_eq!(
            ClientId::parse("72F988BF-86F1-41AF-91AB-2D7CD011DB47")
                .unwrap()
                .to_string(),
            "72f988bf-86f1-41af-91ab-2d7cd011db47"
        );
    }

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

    #[test]
    fn client_secrets() {
        let secret = ClientSecret::parse(SecretString::from("abc~DEF.123")).unwrap();
        assert_eq!(secret.hint(), "abc");
        assert_eq!(format!("{secret:?}"), "ClientSecret([REDACTED])");
        for (bad, expected) in [
            ("", "empty"),
            ("   ", "empty"),
            ("two words", "whitespace"),
            ("tab\there", "whitespace"),
        ] {
            let error = ClientSecret::parse(SecretString::from(bad))
                .unwrap_err()
                .to_string();
            assert!(error.contains(expected), "{bad:?}: {error}");
        }
    }

    #[test]
    fn sharepoint_hosts() {
        assert_eq!(
            SharePointHost::parse("Contoso.SharePoint.com")
                .unwrap()
                .as_str(),
            "contoso.sharepoint.com"
        );
        for bad in [
            "https://contoso.sharepoint.com",
            "contoso",
            "contoso.sharepoint.com/sites/x",
            "",
        ] {
            assert!(SharePointHost::parse(bad).is_err(), "{bad}");
        }
    }
}
