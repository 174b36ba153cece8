//! The required-permissions manifest (the daemon's `config/permissions.toml`): what the
//! app must be granted, per resource, compared as (resource appId, app-role id) pairs.

use std::collections::BTreeSet;
use std::path::Path;

use serde::Deserialize;
use uuid::Uuid;

use super::cloud::Resource;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NeededFor {
    Backup,
    Rotation,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Permission {
    pub name: String,
    pub id: Uuid,
    #[serde(default = "backup")]
    pub needed_for: NeededFor,
    #[serde(default)]
    pub note: Option<String>,
    /// Listed by the vendor's guide, but not an app role Microsoft's service principal
    /// publishes: it cannot be granted, so it is never required (a check would otherwise
    /// report every real tenant `permissions_missing`).
    #[serde(default)]
    pub unpublished: bool,
}

fn backup() -> NeededFor {
    NeededFor::Backup
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourcePermissions {
    pub key: Resource,
    pub name: String,
    pub app_id: Uuid,
    pub permissions: Vec<Permission>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub resources: Vec<ResourcePermissions>,
}

/// A granted or required permission: (resource, app-role id).
pub type PermissionKey = (Resource, Uuid);

impl Manifest {
    pub fn load(path: &Path) -> Result<Manifest, String> {
        let text = std::fs::read_to_string(path).map_err(|error| {
            format!(
                "cannot read permissions manifest {}: {error}",
                path.display()
            )
        })?;
        Manifest::parse(&text)
            .map_err(|error| format!("permissions manifest {}: {error}", path.display()))
    }

    pub fn parse(text: &str) -> Result<Manifest, String> {
        let manifest: Manifest = toml::from_str(text).map_err(|error| error.to_string())?;
        for resource in &manifest.resources {
            if resource.app_id.to_string() != resource.key.app_id() {
                return Err(format!(
                    "resource {} has app_id {}, but {} is {}",
                    resource.name,
                    resource.app_id,
                    resource.key.as_str(),
                    resource.key.app_id()
                ));
            }
            let mut seen = BTreeSet::new();
            for permission in &resource.permissions {
                if !seen.insert(permission.id) {
                    return Err(format!(
                        "{} lists app role {} twice",
                        resource.name, permission.id
                    ));
                }
            }
        }
        Ok(manifest)
    }

    /// Every required (resource, role) pair for `purposes`.
    pub fn required(&self, purposes: &[NeededFor]) -> BTreeSet<PermissionKey> {
        self.resources
            .iter()
            .flat_map(|resource| {
                resource
                    .permissions
                    .iter()
                    .filter(|permission| {
                        !permission.unpublished && purposes.contains(&permission.needed_for)
                    })
                    .map(move |permission| (resource.key, permission.id))
            })
            .collect()
    }

    /// The permission's name, for messages.
    pub fn name(&self, key: &PermissionKey) -> Option<&str> {
        self.resources
            .iter()
            .find(|resource| resource.key == key.0)?
            .permissions
            .iter()
            .find(|permission| permission.id == key.1)
            .map(|permission| permission.name.as_str())
    }

    pub fn resource(&self, resource: Resource) -> Option<&ResourcePermissions> {
        self.resources
            .iter()
            .find(|candidate| candidate.key == resource)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_manifests_are_refused() {
        let wrong_app = "[[resources]]\nkey = \"graph\"\nname = \"x\"\napp_id = \"00000002-0000-0ff1-ce00-000000000000\"\npermissions = []\n";
        assert!(
            Manifest::parse(wrong_app)
                .unwrap_err()
                .contains("graph is 00000003")
        );
        assert!(Manifest::parse("[[resources]]\nkey = \"azuread\"\n").is_err());
    }
}
