//! Microsoft's identifiers and credentials as types: parsed once at the edge, valid from
//! then on. Each newtype has a private field and `parse` as its only constructor, so a
//! `TenantId` in the rest of the code is known to be valid. No IO here.

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
