//! The ids of kodo-access's own rows, as types: an organization's id cannot be passed where
//! a credential's is expected (the seal's associated data binds both, in that order).

use std::fmt;

use uuid::Uuid;

macro_rules! row_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(
            Debug,
            Clone,
            Copy,
            PartialEq,
            Eq,
            Hash,
            PartialOrd,
            Ord,
            serde::Serialize,
            serde::Deserialize,
            sqlx::Type,
        )]
        #[serde(transparent)]
        #[sqlx(transparent)]
        pub struct $name(Uuid);

        impl $name {
            /// A new id, ordered by creation time (UUID v7).
            pub fn new() -> Self {
                Self(Uuid::now_v7())
            }
            pub fn from_uuid(value: Uuid) -> Self {
                Self(value)
            }
            pub fn as_uuid(&self) -> Uuid {
                self.0
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

row_id!(
    /// `organizations.id`.
    OrganizationId
);
row_id!(
    /// `credentials.id`.
    CredentialId
);
row_id!(
    /// `rotations.id`: also in the display name of the secret a rotation adds, which is how a
    /// lost addPassword answer is found again.
    RotationId
);
