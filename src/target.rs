//! What an organization is checked and rotated against, from its row and the settings:
//! the endpoints of its cloud and tenant, the resources it is checked on, and whether and
//! when its secret is rotated. Shared by the checks, the rotation, the metrics and the
//! CLI, none of which owns it.

use crate::context::Context;
use crate::domain::{ClientId, SharePointHost, TenantId};
use crate::microsoft::{Endpoints, Resource};
use crate::store::checks::TargetRow;

/// The organization's endpoints: its configured cloud applied to its tenant and app.
pub fn endpoints(context: &Context, row: &TargetRow) -> Result<Endpoints, String> {
    let cloud = context
        .settings
        .clouds
        .get(&row.cloud)
        .ok_or_else(|| format!("cloud {:?} is not configured", row.cloud))?
        .clone();
    Ok(Endpoints {
        cloud,
        tenant_id: TenantId::from_uuid(row.tenant_id),
        client_id: ClientId::from_uuid(row.client_id),
        sharepoint_host: row
            .sharepoint_host
            .as_deref()
            .and_then(|host| SharePointHost::parse(host).ok()),
    })
}

/// The resources the organization is checked on (and a new secret verified on).
pub fn resources(context: &Context, row: &TargetRow) -> Vec<Resource> {
    row.settings
        .0
        .resources
        .clone()
        .unwrap_or_else(|| context.settings.checks.resources.clone())
}

/// The resources a new secret is verified on: Graph always, and those the organization is
/// checked on that apply to it (SharePoint only with a SharePoint host in its endpoints,
/// as the check skips it otherwise).
pub fn resources_that_apply(
    context: &Context,
    row: &TargetRow,
    endpoints: &Endpoints,
) -> Vec<Resource> {
    let mut resources = resources(context, row);
    resources.retain(|resource| {
        *resource != Resource::SharePoint || endpoints.sharepoint_host.is_some()
    });
    if !resources.contains(&Resource::Graph) {
        resources.insert(0, Resource::Graph);
    }
    resources
}

/// Why an organization's secret is not rotated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RotationOff {
    /// `rotation.enabled = false`.
    Disabled,
    /// No `[[rotation.*]]` deliverer serves the organization: the backup server would keep
    /// the old secret, which rotation removes.
    NoDeliverer,
    /// `org set ORG --rotation off`.
    SwitchedOff,
}

impl RotationOff {
    pub fn reason(self) -> &'static str {
        match self {
            RotationOff::Disabled => "rotation.enabled is false",
            RotationOff::NoDeliverer => "no [[rotation.*]] deliverer serves this organization",
            RotationOff::SwitchedOff => {
                "switched off for this organization (org set --rotation on)"
            }
        }
    }
}

/// Is the organization's secret rotated, why not, and when next: the one answer the CLI,
/// the metrics, the checks and the rotations job share.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RotationStatus {
    pub off: Option<RotationOff>,
    /// The lead time that applies to it (its own, or the configured one).
    pub lead_time: chrono::Duration,
    /// When it is next rotated: the open rotation's next attempt, else the plan's due
    /// time; none when it is not rotated or its secret's expiry is unknown.
    pub next_due: Option<chrono::DateTime<chrono::Utc>>,
}

impl RotationStatus {
    pub fn is_on(&self) -> bool {
        self.off.is_none()
    }
}

/// What the rotation status is computed from, as the store's rows hold it.
pub struct RotationFacts<'a> {
    pub name: &'a str,
    /// `organizations.settings` (`rotation`, `rotation_lead_time_secs`).
    pub settings: &'a crate::domain::OrganizationSettings,
    pub secret_start: Option<chrono::DateTime<chrono::Utc>>,
    pub secret_end: Option<chrono::DateTime<chrono::Utc>>,
    /// The open rotation's next attempt, if one is open.
    pub next_attempt: Option<chrono::DateTime<chrono::Utc>>,
}

pub fn rotation_status(
    rotation: &crate::config::RotationSettings,
    facts: &RotationFacts<'_>,
) -> RotationStatus {
    let off = if !rotation.enabled {
        Some(RotationOff::Disabled)
    } else if rotation.deliverers_for(facts.name).is_empty() {
        Some(RotationOff::NoDeliverer)
    } else if !rotation.active_for(facts.name, facts.settings) {
        Some(RotationOff::SwitchedOff)
    } else {
        None
    };
    let policy = rotation.policy.for_organization(facts.settings);
    let next_due = match off {
        Some(_) => None,
        None => facts.next_attempt.or_else(|| {
            facts
                .secret_end
                .map(|end| crate::domain::plan::due_at(&policy, facts.secret_start, end))
        }),
    };
    RotationStatus {
        off,
        lead_time: policy.lead_time,
        next_due,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Deliverer, RotationSettings, ScopedDeliverer};
    use chrono::{Duration, TimeZone, Utc};

    fn settings(enabled: bool, served: &[&str]) -> RotationSettings {
        RotationSettings {
            enabled,
            policy: crate::domain::plan::RotationPolicy {
                lead_time: Duration::days(30),
                lifetime: Duration::days(180),
            },
            verify_timeout: std::time::Duration::from_secs(60),
            grace: std::time::Duration::from_secs(60),
            pickup_interval: std::time::Duration::from_secs(60),
            prepare_ahead: std::time::Duration::from_secs(86400),
            credential_for_new_organizations: crate::domain::CredentialKind::Secret,
            deliverers: vec![ScopedDeliverer {
                deliverer: Deliverer::File {
                    directory: "/var/lib/backup".into(),
                    mode: 0o600,
                    group: None,
                    pkcs12: None,
                },
                organizations: served.iter().map(|name| name.to_string()).collect(),
            }],
        }
    }

    #[test]
    fn one_answer_to_rotated_why_not_and_when_next() {
        let end = Utc.with_ymd_and_hms(2027, 6, 1, 0, 0, 0).unwrap();
        let start = end - Duration::days(180);
        let attempt = Utc.with_ymd_and_hms(2027, 3, 1, 12, 0, 0).unwrap();
        let facts =
            |settings: &'static crate::domain::OrganizationSettings, next_attempt| RotationFacts {
                name: "contoso",
                settings,
                secret_start: Some(start),
                secret_end: Some(end),
                next_attempt,
            };
        static NONE: std::sync::LazyLock<crate::domain::OrganizationSettings> =
            std::sync::LazyLock::new(Default::default);
        static OFF: std::sync::LazyLock<crate::domain::OrganizationSettings> =
            std::sync::LazyLock::new(|| crate::domain::OrganizationSettings {
                rotation: Some(false),
                ..Default::default()
            });
        let status = |rotation: &RotationSettings, facts: &RotationFacts<'_>| {
            rotation_status(rotation, facts)
        };
        assert_eq!(
            status(&settings(false, &[]), &facts(&NONE, None)).off,
            Some(RotationOff::Disabled)
        );
        assert_eq!(
            status(&settings(true, &["fabrikam"]), &facts(&NONE, None)).off,
            Some(RotationOff::NoDeliverer)
        );
        let off = status(&settings(true, &[]), &facts(&OFF, Some(attempt)));
        assert_eq!(
            (off.off, off.next_due),
            (Some(RotationOff::SwitchedOff), None)
        );
        let on = status(&settings(true, &["contoso"]), &facts(&NONE, None));
        assert!(on.is_on());
        // Due a third of its 180-day lifetime (60 days, more than the 30-day lead) before
        // the expiry.
        assert_eq!(on.next_due, Some(end - Duration::days(60)));
        // An open rotation's next attempt is when it happens next.
        let open = status(&settings(true, &[]), &facts(&NONE, Some(attempt)));
        assert_eq!(open.next_due, Some(attempt));
    }
}
