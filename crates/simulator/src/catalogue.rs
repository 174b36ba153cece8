//! The app roles Microsoft's resource service principals publish (Microsoft Graph,
//! Office 365 Exchange Online, Office 365 SharePoint Online), as recorded from
//! Microsoft's own published data in `catalogue.json` (its `source` says where from).
//!
//! This is what makes the simulator an oracle: it knows the real role ids on its own and
//! never takes them from the client's permissions manifest, so a wrong id there is
//! `permissions_missing` here as it would be in a real tenant. What the daemon's manifest
//! contributes is only which permissions, by name, a scenario's "all"/"backup" grant
//! ([`PresetNames`]); their ids come from this catalogue.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::resource::Resource;

/// Microsoft's published app roles, recorded (see its `source`).
pub const RECORDED: &str = include_str!("../catalogue.json");

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Recorded {
    service_principals: Vec<RecordedPrincipal>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RecordedPrincipal {
    app_id: String,
    app_roles: Vec<RecordedRole>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RecordedRole {
    id: Uuid,
    value: String,
    #[serde(default)]
    display_name: Option<String>,
    allowed_member_types: Vec<String>,
}

/// One app role a resource defines.
#[derive(Debug, Clone, Serialize)]
pub struct RoleDefinition {
    pub id: Uuid,
    pub value: String,
    #[serde(skip)]
    pub display_name: String,
}

/// The permissions a scenario's presets grant, by name ("graph:User.Read.All"): "backup"
/// is what the vendor's guide asks for, "all" adds what rotation needs.
#[derive(Debug, Clone, Default)]
pub struct PresetNames {
    pub backup: Vec<String>,
    pub rotation: Vec<String>,
}

#[derive(Deserialize)]
struct PermissionsFile {
    resources: Vec<PermissionsResource>,
}

#[derive(Deserialize)]
struct PermissionsResource {
    key: String,
    permissions: Vec<PermissionsEntry>,
}

#[derive(Deserialize)]
struct PermissionsEntry {
    name: String,
    #[serde(default)]
    needed_for: Option<String>,
    /// Named by the file but not published by Microsoft: nothing can grant it.
    #[serde(default)]
    unpublished: bool,
}

impl PresetNames {
    /// The names in a permissions file of kodo-access's format (`config/permissions.toml`:
    /// `[[resources]]` with `key` and `permissions` of `name`/`needed_for`). Only names
    /// are read: the ids the file gives are what the simulator checks, not what it uses.
    pub fn from_permissions_toml(text: &str) -> Result<PresetNames, String> {
        let file: PermissionsFile =
            toml::from_str(text).map_err(|error| format!("permissions file: {error}"))?;
        let mut presets = PresetNames::default();
        for resource in file.resources {
            for permission in resource.permissions.into_iter().filter(|p| !p.unpublished) {
                let name = format!("{}:{}", resource.key, permission.name);
                match permission.needed_for.as_deref() {
                    None | Some("backup") => presets.backup.push(name),
                    Some("rotation") => presets.rotation.push(name),
                    Some(other) => {
                        return Err(format!(
                            "permissions file: {name} is needed for {other:?} (backup or rotation)"
                        ));
                    }
                }
            }
        }
        Ok(presets)
    }
}

/// The roles by resource, and the presets resolved to them. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Catalogue {
    roles: Arc<BTreeMap<Resource, Vec<RoleDefinition>>>,
    by_id: Arc<HashMap<(Resource, Uuid), usize>>,
    backup: Arc<Vec<(Resource, Uuid)>>,
    rotation: Arc<Vec<(Resource, Uuid)>>,
    presets_given: bool,
}

impl Catalogue {
    /// Microsoft's recorded roles, no presets.
    pub fn recorded() -> Catalogue {
        let recorded: Recorded =
            serde_json::from_str(RECORDED).expect("the recorded catalogue is valid JSON");
        let mut roles: BTreeMap<Resource, Vec<RoleDefinition>> = BTreeMap::new();
        for principal in recorded.service_principals {
            let resource = Resource::from_app_id(&principal.app_id)
                .expect("the recorded catalogue holds only the three resources");
            let list = roles.entry(resource).or_default();
            for role in principal.app_roles {
                if role.allowed_member_types.iter().any(|t| t == "Application") {
                    list.push(RoleDefinition {
                        display_name: role.display_name.unwrap_or_else(|| role.value.clone()),
                        id: role.id,
                        value: role.value,
                    });
                }
            }
        }
        let mut by_id = HashMap::new();
        for (resource, list) in &roles {
            for (index, role) in list.iter().enumerate() {
                by_id.insert((*resource, role.id), index);
            }
        }
        Catalogue {
            roles: Arc::new(roles),
            by_id: Arc::new(by_id),
            backup: Arc::default(),
            rotation: Arc::default(),
            presets_given: false,
        }
    }

    /// The recorded roles with the presets resolved by name; a name Microsoft does not
    /// define is an error.
    pub fn with_presets(mut self, presets: &PresetNames) -> Result<Catalogue, String> {
        let resolve = |names: &[String]| -> Result<Vec<(Resource, Uuid)>, String> {
            names
                .iter()
                .map(|name| self.parse_permission(name))
                .collect()
        };
        let backup = resolve(&presets.backup)?;
        let rotation = resolve(&presets.rotation)?;
        self.backup = Arc::new(backup);
        self.rotation = Arc::new(rotation);
        self.presets_given = true;
        Ok(self)
    }

    pub fn roles(&self, resource: Resource) -> &[RoleDefinition] {
        self.roles.get(&resource).map_or(&[], Vec::as_slice)
    }

    pub fn role_by_name(&self, resource: Resource, name: &str) -> Option<&RoleDefinition> {
        self.roles(resource).iter().find(|role| role.value == name)
    }

    pub fn role_by_id(&self, resource: Resource, id: Uuid) -> Option<&RoleDefinition> {
        let index = *self.by_id.get(&(resource, id))?;
        self.roles.get(&resource)?.get(index)
    }

    /// "graph:User.Read.All" -> (Graph, the role's id).
    pub fn parse_permission(&self, text: &str) -> Result<(Resource, Uuid), String> {
        let (resource, name) = text
            .split_once(':')
            .ok_or_else(|| format!("permission {text:?} must look like graph:User.Read.All"))?;
        let resource = Resource::parse(resource).ok_or_else(|| {
            format!(
                "permission {text:?}: unknown resource {resource:?} (graph, exchange, sharepoint)"
            )
        })?;
        let role = self.role_by_name(resource, name).ok_or_else(|| {
            format!(
                "permission {text:?}: {} defines no app role {name:?}",
                resource.display_name()
            )
        })?;
        Ok((resource, role.id))
    }

    /// A preset's permissions: "backup", or "all" (backup and rotation).
    pub fn preset(&self, name: &str) -> Result<Vec<(Resource, Uuid)>, String> {
        let wanted: Vec<&(Resource, Uuid)> = match name {
            "backup" => self.backup.iter().collect(),
            "all" => self.backup.iter().chain(self.rotation.iter()).collect(),
            "none" => return Ok(Vec::new()),
            other => {
                return Err(format!(
                    "permissions {other:?}: expected \"all\", \"backup\", \"none\" or a list"
                ));
            }
        };
        if !self.presets_given {
            return Err(format!(
                "permissions {name:?}: the simulator was started without a permissions file, so it knows no presets (give one, or list the permissions)"
            ));
        }
        Ok(wanted.into_iter().copied().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_recorded_catalogue_knows_each_resource_and_resolves_names_to_microsofts_ids() {
        let catalogue = Catalogue::recorded();
        for resource in Resource::ALL {
            assert!(!catalogue.roles(resource).is_empty(), "{resource:?}");
        }
        // Ids from Microsoft's documentation, independent of the recording.
        assert_eq!(
            catalogue
                .parse_permission("graph:Application.ReadWrite.OwnedBy")
                .unwrap()
                .1,
            "18a4783c-866b-4cc7-a460-3d5e5662c884"
                .parse::<Uuid>()
                .unwrap()
        );
        assert_eq!(
            catalogue
                .parse_permission("exchange:full_access_as_app")
                .unwrap()
                .1,
            "dc890d15-9560-4a4c-9b7f-a736ec74ec40"
                .parse::<Uuid>()
                .unwrap()
        );
        assert!(
            catalogue
                .parse_permission("graph:No.Such.Permission")
                .unwrap_err()
                .contains("Microsoft Graph defines no app role")
        );
        assert!(
            catalogue
                .preset("all")
                .unwrap_err()
                .contains("permissions file")
        );
        let with = catalogue
            .with_presets(&PresetNames {
                backup: vec!["graph:User.Read.All".into()],
                rotation: vec!["graph:Application.ReadWrite.OwnedBy".into()],
            })
            .unwrap();
        assert_eq!(
            (
                with.preset("backup").unwrap().len(),
                with.preset("all").unwrap().len()
            ),
            (1, 2)
        );
        assert!(
            Catalogue::recorded()
                .with_presets(&PresetNames {
                    backup: vec!["sharepoint:Sites.Nope".into()],
                    rotation: vec![],
                })
                .is_err()
        );
    }
}
