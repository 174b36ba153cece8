//! A stored credential's origin and status, as the `credentials` table holds them (its
//! CHECK constraints list the same words).

use std::fmt;

macro_rules! text_enum {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
        #[serde(rename_all = "lowercase")]
        pub enum $name {
            $($(#[$vdoc])* $variant),+
        }

        impl $name {
            pub const ALL: &[$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        /// Read from its text column directly (so `Option<Self>` reads a nullable one).
        impl sqlx::Type<sqlx::Postgres> for $name {
            fn type_info() -> sqlx::postgres::PgTypeInfo {
                <&str as sqlx::Type<sqlx::Postgres>>::type_info()
            }

            fn compatible(ty: &sqlx::postgres::PgTypeInfo) -> bool {
                <&str as sqlx::Type<sqlx::Postgres>>::compatible(ty)
            }
        }

        impl<'r> sqlx::Decode<'r, sqlx::Postgres> for $name {
            fn decode(
                value: sqlx::postgres::PgValueRef<'r>,
            ) -> Result<Self, sqlx::error::BoxDynError> {
                let text = <String as sqlx::Decode<sqlx::Postgres>>::decode(value)?;
                Ok($name::try_from(text)?)
            }
        }

        /// A row's column read into the type (`#[sqlx(try_from = "String")]`).
        impl TryFrom<String> for $name {
            type Error = String;

            fn try_from(value: String) -> Result<Self, Self::Error> {
                $name::ALL
                    .iter()
                    .copied()
                    .find(|candidate| candidate.as_str() == value)
                    .ok_or_else(|| format!("unknown {} {value:?}", stringify!($name)))
            }
        }
    };
}

text_enum!(
    /// Who put the credential there.
    CredentialOrigin {
        /// Stored by an operator (`org add`, `org set-secret`, `org import`).
        Operator => "operator",
        /// Created by kodo-access's rotation.
        Rotation => "rotation",
    }
);

text_enum!(
    /// Where the credential is in its life.
    CredentialStatus {
        /// Created by a rotation, not yet trusted.
        Pending => "pending",
        /// The one in use (at most one per organization).
        Current => "current",
        /// Replaced, waiting out the grace period before removal.
        Previous => "previous",
        /// Removed at Microsoft; its ciphertext is wiped.
        Removed => "removed",
        /// Never became current (a rotation that failed); its ciphertext is wiped.
        Discarded => "discarded",
    }
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_words_are_the_schema_constraints_words() {
        let schema = include_str!("../../migrations/20261126000001_initial_schema.sql");
        let list = |words: Vec<&str>| {
            words
                .iter()
                .map(|word| format!("'{word}'"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let origins = list(CredentialOrigin::ALL.iter().map(|o| o.as_str()).collect());
        let statuses = list(CredentialStatus::ALL.iter().map(|s| s.as_str()).collect());
        assert!(
            schema.contains(&format!("origin IN ({origins})")),
            "{origins}"
        );
        assert!(
            schema.contains(&format!("status IN ({statuses})")),
            "{statuses}"
        );
        assert_eq!(
            CredentialStatus::try_from("current".to_string()),
            Ok(CredentialStatus::Current)
        );
        assert!(CredentialStatus::try_from("gone".to_string()).is_err());
    }
}

text_enum!(
    /// What the credential is.
    CredentialKind {
        /// A client secret (a password credential).
        Secret => "secret",
        /// A certificate and its private key (a key credential): client assertions.
        Certificate => "certificate",
    }
);
