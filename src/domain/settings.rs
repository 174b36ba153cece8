//! An organization's own settings (`organizations.settings`, JSON), as a type: what
//! `org set` changes, read the same way by the checks, the rotation and the CLI.

use crate::microsoft::Resource;

/// What an organization overrides of the configuration. Keys this version does not know
/// (written by a newer one) are kept as they are. A value it cannot read is ignored (as if
/// unset) rather than failing the row: one odd row must not stop the checks of the fleet.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct OrganizationSettings {
    /// The resources it is checked on, instead of `checks.resources` (names this version
    /// does not know are left out).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "known_resources"
    )]
    pub resources: Option<Vec<Resource>>,
    /// `false`: its secret is not rotated (`org set ORG --rotation off`).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient"
    )]
    pub rotation: Option<bool>,
    /// Its own rotation lead time, in seconds, instead of `rotation.lead_time`.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient"
    )]
    pub rotation_lead_time_secs: Option<i64>,
    /// The kind of credential it should have (`org set ORG --credential certificate`):
    /// when the current one is another kind, the next rotation moves it.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient"
    )]
    pub credential: Option<super::CredentialKind>,
    /// `true`: a secret replaced by a certificate is removed from the app after the grace
    /// period (by default it is kept, for whatever else still uses it).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient"
    )]
    pub remove_secret_after_grace: Option<bool>,
    #[serde(flatten)]
    pub other: serde_json::Map<String, serde_json::Value>,
}

impl OrganizationSettings {
    /// Whether the next rotation moves the organization from its current credential (of
    /// kind `current`) to a certificate (`org set ORG --credential certificate`).
    pub fn moves_to_certificate(&self, current: Option<super::CredentialKind>) -> bool {
        self.credential == Some(super::CredentialKind::Certificate)
            && current == Some(super::CredentialKind::Secret)
    }
}

/// A value of the right type, or none.
fn lenient<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::de::DeserializeOwned,
{
    let value: serde_json::Value = serde::Deserialize::deserialize(deserializer)?;
    Ok(serde_json::from_value(value).ok())
}

/// A list of resource names, the ones this version knows.
fn known_resources<'de, D>(deserializer: D) -> Result<Option<Vec<Resource>>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    let value: serde_json::Value = serde::Deserialize::deserialize(deserializer)?;
    Ok(value.as_array().map(|names| {
        names
            .iter()
            .filter_map(|name| name.as_str().and_then(Resource::parse))
            .collect()
    }))
}

/// A change to an organization's settings (`org set`): for each setting, nothing, a new
/// value, or back to the configuration's (`Some(None)`).
#[derive(Debug, Clone, Default)]
pub struct SettingsPatch {
    pub resources: Option<Option<Vec<Resource>>>,
    pub rotation: Option<bool>,
    pub rotation_lead_time: Option<Option<std::time::Duration>>,
    pub credential: Option<super::CredentialKind>,
    pub remove_secret_after_grace: Option<bool>,
}

impl SettingsPatch {
    pub fn is_empty(&self) -> bool {
        self.resources.is_none()
            && self.rotation.is_none()
            && self.rotation_lead_time.is_none()
            && self.credential.is_none()
            && self.remove_secret_after_grace.is_none()
    }

    /// Applies the change; returns what changed, by key, for the audit log (`null`: back to
    /// the configuration's).
    pub fn apply(
        &self,
        settings: &mut OrganizationSettings,
    ) -> serde_json::Map<String, serde_json::Value> {
        let mut changed = serde_json::Map::new();
        if let Some(lead_time) = self.rotation_lead_time {
            settings.rotation_lead_time_secs =
                lead_time.map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
            changed.insert(
                "rotation_lead_time_secs".into(),
                serde_json::json!(settings.rotation_lead_time_secs),
            );
        }
        if let Some(rotation) = self.rotation {
            settings.rotation = Some(rotation);
            changed.insert("rotation".into(), serde_json::json!(rotation));
        }
        if let Some(resources) = &self.resources {
            settings.resources = resources.clone();
            changed.insert("resources".into(), serde_json::json!(settings.resources));
        }
        if let Some(kind) = self.credential {
            settings.credential = Some(kind);
            changed.insert("credential".into(), serde_json::json!(kind));
        }
        if let Some(remove) = self.remove_secret_after_grace {
            settings.remove_secret_after_grace = Some(remove);
            changed.insert(
                "remove_secret_after_grace".into(),
                serde_json::json!(remove),
            );
        }
        changed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_keep_their_stored_form_and_unknown_keys() {
        let stored = serde_json::json!({
            "resources": ["graph", "exchange"],
            "rotation": false,
            "rotation_lead_time_secs": 3_888_000,
            "from_a_newer_version": 1
        });
        let mut settings: OrganizationSettings = serde_json::from_value(stored.clone()).unwrap();
        assert_eq!(
            settings.resources,
            Some(vec![Resource::Graph, Resource::Exchange])
        );
        assert_eq!(serde_json::to_value(&settings).unwrap(), stored);
        let changed = SettingsPatch {
            resources: Some(None),
            rotation: Some(true),
            rotation_lead_time: Some(Some(std::time::Duration::from_secs(86_400))),
            ..SettingsPatch::default()
        }
        .apply(&mut settings);
        assert_eq!(
            serde_json::to_value(&settings).unwrap(),
            serde_json::json!({"rotation": true, "rotation_lead_time_secs": 86_400, "from_a_newer_version": 1})
        );
        assert_eq!(
            serde_json::Value::Object(changed),
            serde_json::json!({"resources": null, "rotation": true, "rotation_lead_time_secs": 86_400})
        );
        assert!(SettingsPatch::default().is_empty());
        // What this version cannot read is ignored, not an error for the row.
        let odd: OrganizationSettings = serde_json::from_value(serde_json::json!({
            "resources": ["graph", "teams"],
            "rotation": "maybe",
            "rotation_lead_time_secs": "soon"
        }))
        .unwrap();
        assert_eq!(
            (odd.resources, odd.rotation, odd.rotation_lead_time_secs),
            (Some(vec![Resource::Graph]), None, None)
        );
    }
}
