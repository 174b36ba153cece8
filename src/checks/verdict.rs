//! What a check's observations mean: one state per organization, with the findings
//! behind it. A pure function of data; no IO. Unit-tested for every state.
//!
//! Rules that matter most (shared/reference/peers.md): a check that could not complete is
//! `check_failed`, never `healthy`; a token is not proof of consent (the `roles` claim
//! and Graph's appRoleAssignments are); transient trouble is never "access is gone".

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, TimeZone, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::microsoft::graph::SharePointProbe;
use crate::microsoft::permissions::{Manifest, NeededFor, PermissionKey};
use crate::microsoft::{GraphFailure, Resource, TokenFailure};

pub use crate::domain::State;

use crate::domain::rotation::FailureReason;
pub use crate::domain::{FindingKind, Severity};

/// One thing a check found, in words an operator can act on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    /// Stable identifier, also the alert kind (e.g. `permissions_missing`).
    pub kind: FindingKind,
    /// The kind's severity (kept in the record as it was when found).
    pub severity: Severity,
    pub message: String,
    #[serde(default)]
    pub details: serde_json::Value,
}

impl Finding {
    fn new(kind: FindingKind, message: String, details: serde_json::Value) -> Finding {
        Finding {
            kind,
            severity: kind.severity(),
            message,
            details,
        }
    }
}

/// A failure as observed (token endpoint or Graph), kept for the record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    pub kind: String,
    #[serde(default)]
    pub http_status: Option<u16>,
    #[serde(default)]
    pub codes: Vec<u64>,
    #[serde(default)]
    pub code: Option<String>,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "outcome")]
pub enum TokenObservation {
    Issued {
        roles: Vec<String>,
        certificate: bool,
    },
    Refused {
        failure: TokenFailure,
        detail: Failure,
    },
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CredentialSeen {
    pub key_id: Uuid,
    pub display_name: Option<String>,
    pub hint: Option<String>,
    pub end: Option<DateTime<Utc>>,
    /// A key credential's SHA-1 thumbprint (`None` for a secret).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thumbprint: Option<String>,
    /// Where it is: on the application (a secret or certificate), on the app's service
    /// principal, or a federated identity credential of the application.
    #[serde(default, skip_serializing_if = "CredentialPlace::is_application")]
    pub place: CredentialPlace,
    /// A federated credential's issuer (and subject), whose tokens Entra accepts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CredentialPlace {
    #[default]
    Application,
    ServicePrincipal,
    Federated,
}

impl CredentialPlace {
    fn is_application(&self) -> bool {
        *self == CredentialPlace::Application
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "outcome")]
pub enum GraphObservation<T> {
    Seen {
        value: T,
    },
    Failed {
        failure: GraphFailure,
        detail: Failure,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "outcome")]
pub enum ProbeObservation {
    Accepted,
    CertificateRequired {
        detail: String,
    },
    Refused {
        status: u16,
        detail: String,
    },
    Failed {
        failure: GraphFailure,
        detail: Failure,
    },
}

impl From<SharePointProbe> for ProbeObservation {
    fn from(probe: SharePointProbe) -> Self {
        match probe {
            SharePointProbe::Accepted => ProbeObservation::Accepted,
            SharePointProbe::CertificateRequired { detail, .. } => {
                ProbeObservation::CertificateRequired { detail }
            }
            SharePointProbe::Refused { status, detail } => {
                ProbeObservation::Refused { status, detail }
            }
        }
    }
}

/// What kodo-access knows of the organization's own secret.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OurSecret {
    pub key_id: Option<Uuid>,
    pub hint: Option<String>,
    /// For a certificate, its SHA-1 thumbprint: how it is found among keyCredentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thumbprint: Option<String>,
    pub end: Option<DateTime<Utc>>,
    /// Every keyId kodo-access created or holds (current, previous, pending).
    pub known_key_ids: Vec<Uuid>,
}

/// What the rotation journal says of the organization (not seen at Microsoft, read from
/// the database with the organization).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RotationView {
    /// kodo-access rotates this organization's secret (on globally, with a deliverer, and
    /// not switched off for it). When it does not, `secret_expiring` warns instead.
    pub enabled: bool,
    /// The unfinished rotation's last attempt failed.
    pub failure: Option<RotationFailure>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RotationFailure {
    pub reason: FailureReason,
    pub error: String,
    /// Failed attempts of this rotation so far.
    pub attempts: i32,
    pub since: DateTime<Utc>,
}

/// Everything one check saw.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Observations {
    pub tokens: BTreeMap<Resource, TokenObservation>,
    pub application: Option<GraphObservation<Vec<CredentialSeen>>>,
    /// The service principal's own credentials.
    #[serde(default)]
    pub service_principal: Option<GraphObservation<Vec<CredentialSeen>>>,
    /// Granted (resource, app-role id) pairs from Graph's appRoleAssignments.
    pub assignments: Option<GraphObservation<Vec<(Resource, Uuid)>>>,
    pub sharepoint: Option<ProbeObservation>,
    pub our_secret: OurSecret,
    /// Resources the organization should be checked on but could not be (no SharePoint host).
    #[serde(default)]
    pub not_configured: Vec<Resource>,
    #[serde(default)]
    pub rotation: RotationView,
}

impl Observations {
    /// What the check history keeps of the observations: outcomes and failures, counts
    /// instead of the full role lists (which the findings already name where they matter).
    pub fn summary(&self) -> serde_json::Value {
        let tokens: serde_json::Map<String, serde_json::Value> = self
            .tokens
            .iter()
            .map(|(resource, token)| {
                let value = match token {
                    TokenObservation::Issued { roles, certificate } => serde_json::json!({"issued": true, "roles": roles.len(), "certificate": certificate}),
                    TokenObservation::Refused { failure, detail } => serde_json::json!({"issued": false, "failure": failure, "codes": detail.codes, "http_status": detail.http_status}),
                };
                (resource.as_str().to_string(), value)
            })
            .collect();
        let graph =
            |observation: Option<serde_json::Value>| observation.unwrap_or(serde_json::Value::Null);
        serde_json::json!({
            "tokens": tokens,
            "application": graph(self.application.as_ref().map(|a| match a {
                GraphObservation::Seen { value } => serde_json::json!({"credentials": value}),
                GraphObservation::Failed { failure, detail } => serde_json::json!({"failure": failure, "code": detail.code, "http_status": detail.http_status}),
            })),
            "service_principal": graph(self.service_principal.as_ref().map(|a| match a {
                GraphObservation::Seen { value } => serde_json::json!({"credentials": value}),
                GraphObservation::Failed { failure, detail } => serde_json::json!({"failure": failure, "code": detail.code, "http_status": detail.http_status}),
            })),
            "assignments": graph(self.assignments.as_ref().map(|a| match a {
                GraphObservation::Seen { value } => serde_json::json!({"granted": value.len()}),
                GraphObservation::Failed { failure, detail } => serde_json::json!({"failure": failure, "code": detail.code, "http_status": detail.http_status}),
            })),
            "sharepoint": self.sharepoint,
        })
    }
}

/// What a check is judged against.
#[derive(Debug, Clone)]
pub struct CheckPolicy {
    pub manifest: std::sync::Arc<Manifest>,
    /// `secret_expiring` when the secret expires sooner than this.
    pub warning_window: chrono::Duration,
    /// Rotation's lead time: `rotation_overdue` when the secret expires sooner than this
    /// and its rotation keeps failing.
    pub rotation_lead_time: chrono::Duration,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verdict {
    pub state: State,
    pub findings: Vec<Finding>,
    pub secret_expires_at: Option<DateTime<Utc>>,
    /// Microsoft's keyId of our secret, when matched by hint and not known before.
    pub learned_key_id: Option<Uuid>,
}

/// Exchange Online begins disabling EWS (which full_access_as_app serves): 1 Oct 2026.
fn ews_retirement() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 10, 1, 0, 0, 0)
        .single()
        .expect("valid date")
}

/// SharePoint's Azure ACS app-only (the seed's appinv.aspx step) stopped: 2 Apr 2026.
fn acs_retirement() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 4, 2, 0, 0, 0)
        .single()
        .expect("valid date")
}

fn names(manifest: &Manifest, keys: &BTreeSet<PermissionKey>) -> Vec<String> {
    keys.iter()
        .map(|key| {
            let name = manifest
                .name(key)
                .map(str::to_string)
                .unwrap_or_else(|| key.1.to_string());
            format!("{}:{name}", key.0.as_str())
        })
        .collect()
}

/// The state an observation means. `now` is the check's time.
pub fn decide(observations: &Observations, policy: &CheckPolicy, now: DateTime<Utc>) -> Verdict {
    if let Some(verdict) = access_gone(observations, now) {
        return verdict;
    }
    let mut findings = Vec::new();
    let mut incomplete = Vec::new();
    unobserved(observations, &mut findings, &mut incomplete);
    let (secret_expires_at, learned_key_id) =
        match application(observations, &mut findings, &mut incomplete) {
            Ok(learned) => learned,
            Err(verdict) => return verdict,
        };
    let Permissions {
        revoked,
        missing_backup,
    } = permissions(observations, policy, &mut findings, &mut incomplete);
    let expiring = resources_and_dates(
        observations,
        policy,
        now,
        secret_expires_at,
        &mut findings,
        &mut incomplete,
    );
    let state = if !revoked.is_empty() {
        State::ConsentRevoked
    } else if !incomplete.is_empty() {
        findings.push(Finding::new(
            FindingKind::CheckIncomplete,
            format!("the check could not complete: {}", incomplete.join("; ")),
            serde_json::json!({ "reasons": incomplete }),
        ));
        State::CheckFailed
    } else if !missing_backup.is_empty() {
        State::PermissionsMissing
    } else if expiring {
        State::SecretExpiring
    } else if findings.iter().any(|f| f.severity >= Severity::Warning) {
        State::Degraded
    } else {
        State::Healthy
    };
    // Worst first, for people reading them.
    findings.sort_by_key(|finding| std::cmp::Reverse(finding.severity));
    Verdict {
        state,
        findings,
        secret_expires_at,
        learned_key_id,
    }
}

/// Step 1: token refusals that say access is gone or blocked decide alone.
fn access_gone(observations: &Observations, now: DateTime<Utc>) -> Option<Verdict> {
    use FindingKind as K;
    let gone = [
        (
            TokenFailure::TenantNotFound,
            State::TenantNotFound,
            K::TenantNotFound,
        ),
        (TokenFailure::AppNotFound, State::AppMissing, K::AppMissing),
        (
            TokenFailure::ServicePrincipalMissing,
            State::AppMissing,
            K::AppMissing,
        ),
        (
            TokenFailure::AppDisabled,
            State::AppDisabled,
            K::AppDisabled,
        ),
        (
            TokenFailure::SecretExpired,
            State::SecretExpired,
            K::SecretExpired,
        ),
        (
            TokenFailure::SecretInvalid,
            State::SecretInvalid,
            K::SecretInvalid,
        ),
        // The certificate's counterpart of an invalid secret (one AADSTS code for "not
        // registered", "expired there" and "wrong key").
        (
            TokenFailure::CertificateRejected,
            State::SecretInvalid,
            K::SecretInvalid,
        ),
        (
            TokenFailure::BlockedByPolicy,
            State::BlockedByPolicy,
            K::BlockedByPolicy,
        ),
    ];
    for (failure_kind, state, finding_kind) in gone {
        let refused = observations
            .tokens
            .iter()
            .find_map(|(resource, token)| match token {
                TokenObservation::Refused { failure, detail } if *failure == failure_kind => {
                    Some((resource, detail))
                }
                _ => None,
            });
        if let Some((resource, detail)) = refused {
            // A certificate past its validity: Entra's one code for it is 700027; the
            // certificate itself says why.
            let expired_certificate = observations.our_secret.end.filter(|end| {
                failure_kind == TokenFailure::CertificateRejected
                    && observations.our_secret.thumbprint.is_some()
                    && *end <= now
            });
            let (state, finding_kind) = match expired_certificate {
                Some(_) => (State::SecretExpired, K::SecretExpired),
                None => (state, finding_kind),
            };
            let message = match (failure_kind, state) {
                (TokenFailure::CertificateRejected, State::SecretExpired) => format!(
                    "the certificate expired on {} and Entra ID refuses it (AADSTS700027)",
                    expired_certificate.unwrap_or(now).format("%Y-%m-%d %H:%M UTC")
                ),
                (TokenFailure::CertificateRejected, _) => "Entra ID refuses the certificate (AADSTS700027: not registered on the app, expired there, or not the key of the registered certificate)".to_string(),
                (_, state) => match state {
                State::TenantNotFound => "the tenant was not found in this cloud (deleted, or the tenant id or cloud is wrong)".to_string(),
                State::AppMissing => "the app registration or its service principal is not in the tenant (deleted, or consent was never granted)".to_string(),
                State::AppDisabled => "the app's service principal is disabled in the tenant".to_string(),
                State::SecretExpired => "the client secret has expired".to_string(),
                State::SecretInvalid => "Entra ID refuses the client secret (removed from the app, or the wrong value)".to_string(),
                _ => "a tenant policy (Conditional Access, security defaults or tenant restrictions) blocks the app".to_string(),
                },
            };
            let findings = vec![Finding::new(
                finding_kind,
                message,
                serde_json::json!({
                    "resource": resource.as_str(), "codes": detail.codes, "http_status": detail.http_status, "error": detail.message,
                }),
            )];
            return Some(Verdict {
                state,
                findings,
                secret_expires_at: observations.our_secret.end,
                learned_key_id: None,
            });
        }
    }
    None
}

/// Step 2: what could not be observed.
fn unobserved(
    observations: &Observations,
    findings: &mut Vec<Finding>,
    incomplete: &mut Vec<String>,
) {
    for (resource, token) in &observations.tokens {
        if let TokenObservation::Refused { failure, detail } = token {
            match failure {
                TokenFailure::ResourceUnavailable => findings.push(Finding::new(
                    FindingKind::ResourceUnavailable,
                    format!("{} is not available in the tenant (not licensed, or the SharePoint host is wrong)", resource.as_str()),
                    serde_json::json!({ "resource": resource.as_str(), "codes": detail.codes }),
                )),
                TokenFailure::WrongCloud => {
                    findings.push(Finding::new(FindingKind::WrongCloud, "the tenant belongs to another national cloud: register the organization with the right --cloud".into(), serde_json::json!({ "codes": detail.codes })));
                    incomplete.push(format!("{} token: wrong cloud", resource.as_str()));
                }
                _ => incomplete.push(format!("{} token: {} ({})", resource.as_str(), failure.as_str(), detail.message)),
            }
        }
    }
    for resource in &observations.not_configured {
        findings.push(Finding::new(
            FindingKind::ResourceNotConfigured,
            format!("{} is not checked: the organization has no SharePoint host (org set ORG --sharepoint-host)", resource.as_str()),
            serde_json::json!({ "resource": resource.as_str() }),
        ));
    }
}

/// Step 3: the application (a real Graph call) and our secret on it: the secret's expiry and
/// key id as Graph shows them, or the verdict when the application is gone.
fn application(
    observations: &Observations,
    findings: &mut Vec<Finding>,
    incomplete: &mut Vec<String>,
) -> Result<(Option<DateTime<Utc>>, Option<Uuid>), Verdict> {
    let mut secret_expires_at = observations.our_secret.end;
    let mut learned_key_id = None;
    // Every way in that kodo-access did not create or receive, wherever it was seen.
    let mut unknown: Vec<&CredentialSeen> = Vec::new();
    match &observations.application {
        Some(GraphObservation::Seen { value: credentials }) => {
            let ours = secret_on_app(&observations.our_secret, credentials);
            if let Some(ours) = ours {
                if ours.end.is_some() {
                    secret_expires_at = ours.end;
                }
                if observations.our_secret.key_id.is_none() {
                    learned_key_id = Some(ours.key_id);
                }
            }
            unknown.extend(credentials.iter().filter(|credential| Some(credential.key_id) != ours.map(|o| o.key_id)));
        }
        Some(GraphObservation::Failed { failure: GraphFailure::NotFound, detail }) => {
            findings.push(Finding::new(FindingKind::AppMissing, "Graph says the application does not exist in the tenant".into(), serde_json::json!({ "code": detail.code })));
            return Err(Verdict { state: State::AppMissing, findings: std::mem::take(findings), secret_expires_at, learned_key_id });
        }
        Some(GraphObservation::Failed { failure: GraphFailure::Forbidden, detail }) => findings.push(Finding::new(
            FindingKind::GraphReadDenied,
            "the app may not read its own application object (grant Application.Read.All, or Application.ReadWrite.OwnedBy with the app's service principal an owner of its application); secret expiry and unknown credentials cannot be checked".into(),
            serde_json::json!({ "code": detail.code }),
        )),
        Some(GraphObservation::Failed { failure, detail }) => incomplete.push(format!("get application: {} ({})", failure.as_str(), detail.message)),
        None => {}
    }
    // The service principal's own credentials count even when the application could not
    // be read (an app that may not read itself may still read its service principal).
    match &observations.service_principal {
        Some(GraphObservation::Seen { value }) => unknown.extend(value),
        Some(GraphObservation::Failed { failure: GraphFailure::Forbidden, detail }) => findings.push(Finding::new(
            FindingKind::GraphReadDenied,
            "the app may not read its own service principal (grant Application.Read.All or Directory.Read.All): credentials planted there cannot be seen".into(),
            serde_json::json!({ "code": detail.code }),
        )),
        Some(GraphObservation::Failed { failure, detail }) => incomplete.push(format!("get service principal: {} ({})", failure.as_str(), detail.message)),
        None => {}
    }
    unknown.retain(|credential| {
        !observations
            .our_secret
            .known_key_ids
            .contains(&credential.key_id)
    });
    if !unknown.is_empty() {
        let count = |place: CredentialPlace| unknown.iter().filter(|c| c.place == place).count();
        let places: Vec<String> = [
            (
                CredentialPlace::Application,
                "client secret(s) or certificate(s) on the application",
            ),
            (
                CredentialPlace::ServicePrincipal,
                "credential(s) on the app's service principal",
            ),
            (
                CredentialPlace::Federated,
                "federated identity credential(s) (tokens of another identity provider accepted)",
            ),
        ]
        .into_iter()
        .filter(|(place, _)| count(*place) > 0)
        .map(|(place, what)| format!("{} {what}", count(place)))
        .collect();
        findings.push(Finding::new(
            FindingKind::UnknownCredential,
            format!("the app can be signed in to with {} that kodo-access did not create or receive; check who added them", places.join(", ")),
            serde_json::json!(unknown.iter().map(|c| serde_json::json!({"key_id": c.key_id, "place": c.place, "display_name": c.display_name, "hint": c.hint, "thumbprint": c.thumbprint, "issuer": c.issuer, "expires": c.end})).collect::<Vec<_>>()),
        ));
    }
    Ok((secret_expires_at, learned_key_id))
}

/// The permissions Graph lists as granted (`None` when it could not be read).
fn granted_assignments(
    observations: &Observations,
    findings: &mut Vec<Finding>,
    incomplete: &mut Vec<String>,
) -> Option<BTreeSet<PermissionKey>> {
    match &observations.assignments {
        Some(GraphObservation::Seen { value }) => Some(value.iter().copied().collect()),
        Some(GraphObservation::Failed {
            failure: GraphFailure::Forbidden,
            ..
        }) => {
            findings.push(Finding::new(FindingKind::GraphReadDenied, "the app may not read its appRoleAssignments; permissions are judged from token roles alone".into(), serde_json::Value::Null));
            None
        }
        Some(GraphObservation::Failed { failure, detail }) => {
            incomplete.push(format!(
                "appRoleAssignments: {} ({})",
                failure.as_str(),
                detail.message
            ));
            None
        }
        None => None,
    }
}

/// What a check made of the permissions.
struct Permissions {
    /// Resources whose token carries no role and where nothing is granted: consent gone.
    revoked: Vec<Resource>,
    missing_backup: BTreeSet<PermissionKey>,
}

/// Step 4: permissions, from the token's roles and Graph's appRoleAssignments, per resource.
fn permissions(
    observations: &Observations,
    policy: &CheckPolicy,
    findings: &mut Vec<Finding>,
    incomplete: &mut Vec<String>,
) -> Permissions {
    let required_backup = policy.manifest.required(&[NeededFor::Backup]);
    let required_rotation = policy.manifest.required(&[NeededFor::Rotation]);
    let assignments = granted_assignments(observations, findings, incomplete);
    let mut missing_backup = BTreeSet::new();
    let mut missing_rotation = BTreeSet::new();
    let mut revoked = Vec::new();
    for (resource, token) in &observations.tokens {
        let TokenObservation::Issued { roles, .. } = token else {
            continue;
        };
        let manifest_resource = policy.manifest.resource(*resource);
        let granted: BTreeSet<PermissionKey> = match &assignments {
            Some(assignments) => assignments
                .iter()
                .filter(|(r, _)| r == resource)
                .copied()
                .collect(),
            None => manifest_resource
                .map(|r| {
                    r.permissions
                        .iter()
                        .filter(|p| roles.contains(&p.name))
                        .map(|p| (*resource, p.id))
                        .collect()
                })
                .unwrap_or_default(),
        };
        let required_here: BTreeSet<PermissionKey> = required_backup
            .iter()
            .filter(|(r, _)| r == resource)
            .copied()
            .collect();
        if !required_here.is_empty() && granted.is_empty() && roles.is_empty() {
            revoked.push(*resource);
            continue;
        }
        missing_backup.extend(required_here.difference(&granted).copied());
        missing_rotation.extend(
            required_rotation
                .iter()
                .filter(|(r, _)| r == resource)
                .filter(|key| !granted.contains(key))
                .copied(),
        );
        role_diagnostics(
            *resource,
            roles,
            &granted,
            manifest_resource,
            assignments.is_some(),
            findings,
        );
    }
    if !revoked.is_empty() {
        let resources: Vec<&str> = revoked.iter().map(|r| r.as_str()).collect();
        findings.push(Finding::new(
            FindingKind::ConsentRevoked,
            format!(
                "admin consent is gone: no application permission left on {}",
                resources.join(", ")
            ),
            serde_json::json!({ "resources": resources }),
        ));
    }
    if !missing_backup.is_empty() {
        let missing = names(&policy.manifest, &missing_backup);
        findings.push(Finding::new(
            FindingKind::PermissionsMissing,
            format!(
                "{} required permission(s) not granted: {}",
                missing.len(),
                missing.join(", ")
            ),
            serde_json::json!({ "missing": missing }),
        ));
    }
    if !missing_rotation.is_empty() && observations.rotation.enabled {
        findings.push(Finding::new(
            FindingKind::RotationPermissionMissing,
            "secret rotation needs Application.ReadWrite.OwnedBy, with the app's service principal an owner of its own application object".into(),
            serde_json::json!({ "missing": names(&policy.manifest, &missing_rotation) }),
        ));
    }
    Permissions {
        revoked,
        missing_backup,
    }
}

/// Roles the token carries that Graph no longer lists (replication lag), and roles beyond
/// what the backup needs.
fn role_diagnostics(
    resource: Resource,
    roles: &[String],
    granted: &BTreeSet<PermissionKey>,
    manifest_resource: Option<&kodo_microsoft::permissions::ResourcePermissions>,
    assignments_known: bool,
    findings: &mut Vec<Finding>,
) {
    let name_of = |id: Uuid| {
        manifest_resource
            .and_then(|r| r.permissions.iter().find(|p| p.id == id))
            .map(|p| p.name.as_str())
    };
    // The token is issued from the same assignments: a difference is replication lag.
    if assignments_known {
        let token_only: Vec<&String> = roles
            .iter()
            .filter(|role| {
                !granted
                    .iter()
                    .any(|(_, id)| name_of(*id) == Some(role.as_str()))
            })
            .filter(|role| {
                manifest_resource.is_some_and(|r| r.permissions.iter().any(|p| &p.name == *role))
            })
            .collect();
        if !token_only.is_empty() {
            findings.push(Finding::new(FindingKind::RolesDisagree, format!("the {} token carries roles Graph no longer lists (recent change still replicating)", resource.as_str()), serde_json::json!({ "roles": token_only })));
        }
    }
    let extra: Vec<&String> = roles
        .iter()
        .filter(|role| {
            manifest_resource.is_none_or(|r| !r.permissions.iter().any(|p| &p.name == *role))
        })
        .collect();
    if !extra.is_empty() {
        findings.push(Finding::new(
            FindingKind::PermissionsExtra,
            format!(
                "granted on {} beyond what the backup needs: {}",
                resource.as_str(),
                extra
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            serde_json::json!({ "resource": resource.as_str(), "roles": extra }),
        ));
    }
}

/// Step 5: what the resources really accept, and the dates the operator must know; whether the
/// secret expires within the warning window.
fn resources_and_dates(
    observations: &Observations,
    policy: &CheckPolicy,
    now: DateTime<Utc>,
    secret_expires_at: Option<DateTime<Utc>>,
    findings: &mut Vec<Finding>,
    incomplete: &mut Vec<String>,
) -> bool {
    match &observations.sharepoint {
        Some(ProbeObservation::CertificateRequired { detail }) => findings.push(Finding::new(
            FindingKind::SharepointCertificateRequired,
            "SharePoint REST refuses app-only tokens obtained with a client secret: add a certificate credential for SharePoint backups".into(),
            serde_json::json!({ "answer": detail }),
        )),
        Some(ProbeObservation::Refused { status, detail }) => findings.push(Finding::new(FindingKind::SharepointRefused, format!("SharePoint REST answered {status}"), serde_json::json!({ "answer": detail }))),
        Some(ProbeObservation::Failed { failure, detail }) => incomplete.push(format!("SharePoint probe: {} ({})", failure.as_str(), detail.message)),
        Some(ProbeObservation::Accepted) | None => {}
    }
    let exchange_granted = matches!(observations.tokens.get(&Resource::Exchange), Some(TokenObservation::Issued { roles, .. }) if roles.iter().any(|r| r == "full_access_as_app"));
    if exchange_granted && now >= ews_retirement() {
        findings.push(Finding::new(
            FindingKind::EwsRetirement,
            "Exchange Online is disabling EWS, which full_access_as_app serves (from 1 Oct 2026, permanently 1 Apr 2027): plan mailbox backup through Graph".into(),
            serde_json::Value::Null,
        ));
    }
    if observations.tokens.contains_key(&Resource::SharePoint) && now >= acs_retirement() {
        findings.push(Finding::new(
            FindingKind::AcsRetirement,
            "SharePoint app-only access granted through appinv.aspx (Azure ACS) stopped working on 2 Apr 2026: the setup guide's step 15 no longer applies".into(),
            serde_json::Value::Null,
        ));
    }
    let expiring = secret_expires_at.is_some_and(|end| end - now < policy.warning_window);
    if observations.rotation.enabled {
        findings.extend(rotation_findings(
            &observations.rotation,
            secret_expires_at,
            policy,
            now,
        ));
    } else if let (true, Some(end)) = (expiring, secret_expires_at) {
        let days = (end - now).num_hours() as f64 / 24.0;
        findings.push(Finding::new(
            FindingKind::SecretExpiring,
            format!(
                "the client secret expires in {days:.1} days ({})",
                end.format("%Y-%m-%d %H:%M UTC")
            ),
            serde_json::json!({ "expires": end }),
        ));
    }
    expiring
}

/// What the rotation's failures and the secret's expiry say when kodo-access rotates the
/// secret: refusals that need a person at once, failures that keep coming, and
/// `rotation_overdue` as expiry nears without a new secret.
fn rotation_findings(
    rotation: &RotationView,
    secret_expires_at: Option<DateTime<Utc>>,
    policy: &CheckPolicy,
    now: DateTime<Utc>,
) -> Vec<Finding> {
    let mut findings = Vec::new();
    let details = |failure: &RotationFailure| {
        serde_json::json!({
            "reason": failure.reason,
            "attempts": failure.attempts,
            "failing_since": failure.since,
        })
    };
    if let Some(failure) = &rotation.failure {
        let refusal = match failure.reason {
            FailureReason::NotAuthorized => Some((
                FindingKind::RotationNotAuthorized,
                format!(
                    "Microsoft Graph refuses to add a client secret (403): the app needs Application.ReadWrite.OwnedBy and must own its application object ({})",
                    failure.error
                ),
            )),
            FailureReason::SecretsNotAllowed => Some((
                FindingKind::RotationSecretsNotAllowed,
                format!(
                    "the tenant's app-management policy allows no client secrets on this app: it needs a certificate ({})",
                    failure.error
                ),
            )),
            _ => None,
        };
        match refusal {
            Some((kind, message)) => findings.push(Finding::new(kind, message, details(failure))),
            // One failure may be a passing problem that the next attempt survives.
            None if failure.attempts >= 2 => findings.push(Finding::new(
                FindingKind::RotationFailing,
                format!(
                    "secret rotation has failed {} times since {} ({}): {}",
                    failure.attempts,
                    failure.since.format("%Y-%m-%d %H:%M UTC"),
                    failure.reason,
                    failure.error
                ),
                details(failure),
            )),
            None => {}
        }
    }
    // (A rotation that is due but never attempted, the rotations job stuck, is Prometheus's
    // to see: KodoAccessRotationStalled in config/prometheus.)
    // One transient failure (a request that timed out, a daemon paused mid-request) pages
    // nobody: it is retried within minutes. A second one, or a refusal, does.
    let failing = rotation.failure.as_ref().filter(|failure| {
        failure.attempts >= 2 || failure.reason != FailureReason::MicrosoftUnavailable
    });
    if let (Some(end), Some(failure)) = (secret_expires_at, failing) {
        let left = end - now;
        if crate::domain::plan::overdue(policy.rotation_lead_time, end, now) {
            let days = left.num_hours() as f64 / 24.0;
            let why = format!(
                "its rotation keeps failing ({}): {}",
                failure.reason, failure.error
            );
            findings.push(Finding::new(
                FindingKind::RotationOverdue,
                format!(
                    "the client secret expires in {days:.1} days ({}) and {why}",
                    end.format("%Y-%m-%d %H:%M UTC")
                ),
                serde_json::json!({ "expires": end, "reason": failure.reason }),
            ));
        }
    }
    findings
}

/// Our secret among the app's credentials: by keyId, else by a hint only one has.
fn secret_on_app<'a>(
    ours: &OurSecret,
    credentials: &'a [CredentialSeen],
) -> Option<&'a CredentialSeen> {
    if let Some(key_id) = ours.key_id {
        return credentials
            .iter()
            .find(|credential| credential.key_id == key_id);
    }
    if let Some(thumbprint) = ours.thumbprint.as_deref() {
        return credentials
            .iter()
            .find(|credential| credential.thumbprint.as_deref() == Some(thumbprint));
    }
    let hint = ours.hint.as_deref()?;
    let mut matching = credentials
        .iter()
        .filter(|credential| credential.hint.as_deref() == Some(hint));
    let first = matching.next()?;
    matching.next().is_none().then_some(first)
}

#[cfg(test)]
mod tests {
    use super::*;

    const OUR_KEY: &str = "3f2504e0-4f89-41d3-9a0c-0305e82c3301";

    fn policy() -> CheckPolicy {
        CheckPolicy {
            manifest: std::sync::Arc::new(crate::config::builtin_manifest()),
            warning_window: chrono::Duration::days(30),
            rotation_lead_time: chrono::Duration::days(30),
        }
    }

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 26, 12, 0, 0).unwrap()
    }

    fn all_granted() -> Vec<(Resource, Uuid)> {
        policy()
            .manifest
            .required(&[NeededFor::Backup, NeededFor::Rotation])
            .into_iter()
            .collect()
    }

    fn roles_for(granted: &[(Resource, Uuid)], resource: Resource) -> Vec<String> {
        let manifest = policy().manifest;
        granted
            .iter()
            .filter(|(r, _)| *r == resource)
            .filter_map(|key| manifest.name(key).map(String::from))
            .collect()
    }

    /// A fully healthy organization checked on Graph and Exchange (no SharePoint probe).
    fn healthy() -> Observations {
        let granted = all_granted();
        let mut tokens = BTreeMap::new();
        for resource in [Resource::Graph, Resource::Exchange] {
            tokens.insert(
                resource,
                TokenObservation::Issued {
                    roles: roles_for(&granted, resource),
                    certificate: false,
                },
            );
        }
        Observations {
            tokens,
            application: Some(GraphObservation::Seen {
                value: vec![CredentialSeen {
                    key_id: OUR_KEY.parse().unwrap(),
                    display_name: None,
                    hint: Some("Abc".into()),
                    end: Some(now() + chrono::Duration::days(200)),
                    thumbprint: None,
                    ..Default::default()
                }],
            }),
            service_principal: Some(GraphObservation::Seen { value: vec![] }),
            assignments: Some(GraphObservation::Seen { value: granted }),
            sharepoint: None,
            our_secret: OurSecret {
                key_id: Some(OUR_KEY.parse().unwrap()),
                hint: Some("Abc".into()),
                end: None,
                known_key_ids: vec![OUR_KEY.parse().unwrap()],
                thumbprint: None,
            },
            not_configured: vec![],
            rotation: RotationView::default(),
        }
    }

    fn failure(message: &str) -> Failure {
        Failure {
            kind: "x".into(),
            http_status: Some(400),
            codes: vec![],
            code: None,
            message: message.into(),
        }
    }

    fn refused(
        mut observations: Observations,
        resource: Resource,
        kind: TokenFailure,
    ) -> Observations {
        observations.tokens.insert(
            resource,
            TokenObservation::Refused {
                failure: kind,
                detail: failure("refused"),
            },
        );
        observations
    }

    fn check(observations: &Observations) -> Verdict {
        decide(observations, &policy(), now())
    }

    fn kinds(verdict: &Verdict) -> Vec<&str> {
        verdict.findings.iter().map(|f| f.kind.as_str()).collect()
    }

    #[test]
    fn healthy_when_everything_is_granted_and_nothing_is_odd() {
        let verdict = check(&healthy());
        assert_eq!(verdict.state, State::Healthy, "{:?}", verdict.findings);
        // The EWS advisory is information, not degradation.
        assert_eq!(kinds(&verdict), ["ews_retirement"]);
        assert_eq!(
            verdict.secret_expires_at,
            Some(now() + chrono::Duration::days(200))
        );
    }

    #[test]
    fn token_refusals_decide_the_state() {
        let cases = [
            (TokenFailure::TenantNotFound, State::TenantNotFound),
            (TokenFailure::AppNotFound, State::AppMissing),
            (TokenFailure::ServicePrincipalMissing, State::AppMissing),
            (TokenFailure::AppDisabled, State::AppDisabled),
            (TokenFailure::SecretExpired, State::SecretExpired),
            (TokenFailure::SecretInvalid, State::SecretInvalid),
            (TokenFailure::BlockedByPolicy, State::BlockedByPolicy),
        ];
        for (failure, expected) in cases {
            let verdict = check(&refused(healthy(), Resource::Graph, failure));
            assert_eq!(verdict.state, expected, "{failure:?}");
            assert_eq!(verdict.findings[0].kind.as_str(), expected.as_str());
            assert_eq!(verdict.findings[0].severity, Severity::Critical);
        }
    }

    #[test]
    fn transient_trouble_is_check_failed_never_gone() {
        for failure in [
            TokenFailure::Throttled,
            TokenFailure::Transient,
            TokenFailure::Unknown,
            TokenFailure::Configuration,
        ] {
            let verdict = check(&refused(healthy(), Resource::Graph, failure));
            assert_eq!(verdict.state, State::CheckFailed, "{failure:?}");
            assert!(kinds(&verdict).contains(&"check_incomplete"));
        }
        let mut graph_down = healthy();
        graph_down.assignments = Some(GraphObservation::Failed {
            failure: GraphFailure::Transient,
            detail: failure("503"),
        });
        assert_eq!(check(&graph_down).state, State::CheckFailed);
        let mut app_throttled = healthy();
        app_throttled.application = Some(GraphObservation::Failed {
            failure: GraphFailure::Throttled,
            detail: failure("429"),
        });
        assert_eq!(check(&app_throttled).state, State::CheckFailed);
        let mut wrong_cloud = refused(healthy(), Resource::Graph, TokenFailure::WrongCloud);
        wrong_cloud.tokens.remove(&Resource::Exchange);
        let verdict = check(&wrong_cloud);
        assert_eq!(verdict.state, State::CheckFailed);
        assert!(kinds(&verdict).contains(&"wrong_cloud"));
    }

    #[test]
    fn consent_revoked_when_a_resource_has_no_permission_left() {
        let mut observations = healthy();
        // Token issued without roles; Graph lists no Exchange assignment.
        observations.tokens.insert(
            Resource::Exchange,
            TokenObservation::Issued {
                roles: vec![],
                certificate: false,
            },
        );
        if let Some(GraphObservation::Seen { value }) = &mut observations.assignments {
            value.retain(|(r, _)| *r != Resource::Exchange);
        }
        let verdict = check(&observations);
        assert_eq!(verdict.state, State::ConsentRevoked);
        let finding = verdict
            .findings
            .iter()
            .find(|f| f.kind == FindingKind::ConsentRevoked)
            .unwrap();
        assert_eq!(
            finding.details["resources"],
            serde_json::json!(["exchange"])
        );
    }

    #[test]
    fn permissions_missing_names_them_and_token_alone_is_not_trusted() {
        let mut observations = healthy();
        let mail: Uuid = "e2a3a72e-5f79-4c64-b1b1-878b674786c9".parse().unwrap();
        if let Some(GraphObservation::Seen { value }) = &mut observations.assignments {
            value.retain(|(r, id)| !(*r == Resource::Graph && *id == mail));
        }
        // The token still says Mail.ReadWrite (replication lag): Graph's list decides.
        let verdict = check(&observations);
        assert_eq!(verdict.state, State::PermissionsMissing);
        let finding = verdict
            .findings
            .iter()
            .find(|f| f.kind == FindingKind::PermissionsMissing)
            .unwrap();
        assert_eq!(
            finding.details["missing"],
            serde_json::json!(["graph:Mail.ReadWrite"])
        );
        assert!(kinds(&verdict).contains(&"roles_disagree"));
    }

    #[test]
    fn without_graph_read_access_token_roles_decide() {
        let mut observations = healthy();
        observations.assignments = Some(GraphObservation::Failed {
            failure: GraphFailure::Forbidden,
            detail: failure("403"),
        });
        observations.tokens.insert(
            Resource::Graph,
            TokenObservation::Issued {
                roles: vec!["User.Read.All".into()],
                certificate: false,
            },
        );
        let verdict = check(&observations);
        assert_eq!(verdict.state, State::PermissionsMissing);
        assert!(kinds(&verdict).contains(&"graph_read_denied"));
    }

    #[test]
    fn a_denied_read_of_the_app_advises_the_least_privilege_that_works() {
        let mut observations = healthy();
        observations.application = Some(GraphObservation::Failed {
            failure: GraphFailure::Forbidden,
            detail: failure("403"),
        });
        let verdict = check(&observations);
        let finding = verdict
            .findings
            .iter()
            .find(|f| f.kind == FindingKind::GraphReadDenied)
            .expect("graph_read_denied");
        assert!(
            finding.message.contains("Application.Read.All"),
            "{}",
            finding.message
        );
        assert!(
            !finding.message.contains("Directory.ReadWrite.All"),
            "{}",
            finding.message
        );
        let action = FindingKind::GraphReadDenied.action().unwrap();
        assert!(!action.contains("Directory.ReadWrite.All"), "{action}");
    }

    #[test]
    fn rotation_permission_alone_degrades() {
        let mut observations = healthy();
        let owned_by: Uuid = "18a4783c-866b-4cc7-a460-3d5e5662c884".parse().unwrap();
        if let Some(GraphObservation::Seen { value }) = &mut observations.assignments {
            value.retain(|(_, id)| *id != owned_by);
        }
        assert!(
            !kinds(&check(&observations)).contains(&"rotation_permission_missing"),
            "without rotation, nothing needs the permission"
        );
        observations.rotation.enabled = true;
        let verdict = check(&observations);
        assert_eq!(verdict.state, State::Degraded);
        assert!(kinds(&verdict).contains(&"rotation_permission_missing"));
    }

    fn expiring_in(days: i64) -> Observations {
        let mut observations = healthy();
        observations.application = Some(GraphObservation::Seen {
            value: vec![CredentialSeen {
                key_id: OUR_KEY.parse().unwrap(),
                display_name: None,
                hint: Some("Abc".into()),
                end: Some(now() + chrono::Duration::days(days)),
                thumbprint: None,
                ..Default::default()
            }],
        });
        observations
    }

    fn rotation_failure(reason: &str, attempts: i32) -> Option<RotationFailure> {
        Some(RotationFailure {
            reason: FailureReason::parse(reason),
            error: "graph addPassword failed".into(),
            attempts,
            since: now() - chrono::Duration::hours(3),
        })
    }

    #[test]
    fn with_rotation_on_an_expiring_secret_is_rotations_business() {
        // Rotating, not failing, due only recently: no alert, the state still says so.
        let mut observations = expiring_in(20);
        observations.rotation.enabled = true;
        let verdict = check(&observations);
        assert_eq!(verdict.state, State::SecretExpiring);
        assert!(
            !kinds(&verdict)
                .iter()
                .any(|k| k.starts_with("secret_expiring") || k.starts_with("rotation_")),
            "{:?}",
            kinds(&verdict)
        );
        // Failing while expiry is within the lead time: overdue, with the reason.
        observations.rotation.failure = rotation_failure("delivery_failed", 1);
        let verdict = check(&observations);
        let overdue = verdict
            .findings
            .iter()
            .find(|f| f.kind == FindingKind::RotationOverdue)
            .expect("overdue");
        assert_eq!(overdue.severity, Severity::Critical);
        assert!(
            overdue.message.contains("delivery_failed"),
            "{}",
            overdue.message
        );
        assert!(
            !kinds(&verdict).contains(&"rotation_failing"),
            "one failure is not yet a pattern"
        );
        observations.rotation.failure = rotation_failure("delivery_failed", 2);
        assert!(kinds(&check(&observations)).contains(&"rotation_failing"));
        // Not failing (not tried yet), with ten days left: the rotation job's business.
        let mut waiting = expiring_in(10);
        waiting.rotation.enabled = true;
        assert!(!kinds(&check(&waiting)).contains(&"rotation_overdue"));
        // Far from expiry, a failure is not overdue.
        let mut early = healthy();
        early.rotation.enabled = true;
        early.rotation.failure = rotation_failure("microsoft_unavailable", 3);
        assert_eq!(
            kinds(&check(&early)),
            ["rotation_failing", "ews_retirement"]
        );
    }

    #[test]
    fn one_transient_rotation_failure_pages_nobody() {
        let mut observations = expiring_in(5);
        observations.rotation.enabled = true;
        observations.rotation.failure = rotation_failure("microsoft_unavailable", 1);
        assert!(!kinds(&check(&observations)).contains(&"rotation_overdue"));
        observations.rotation.failure = rotation_failure("microsoft_unavailable", 2);
        assert!(kinds(&check(&observations)).contains(&"rotation_overdue"));
        observations.rotation.failure = rotation_failure("delivery_failed", 1);
        assert!(kinds(&check(&observations)).contains(&"rotation_overdue"));
    }

    #[test]
    fn rotation_refusals_that_need_a_person_alert_at_once() {
        for (reason, kind) in [
            ("not_authorized", "rotation_not_authorized"),
            ("secrets_not_allowed", "rotation_secrets_not_allowed"),
        ] {
            let mut observations = healthy();
            observations.rotation.enabled = true;
            observations.rotation.failure = rotation_failure(reason, 1);
            let verdict = check(&observations);
            assert!(
                kinds(&verdict).contains(&kind),
                "{reason}: {:?}",
                kinds(&verdict)
            );
            assert_eq!(verdict.state, State::Degraded);
        }
    }

    #[test]
    fn secret_expiring_within_the_warning_window() {
        let mut observations = healthy();
        observations.application = Some(GraphObservation::Seen {
            value: vec![CredentialSeen {
                key_id: OUR_KEY.parse().unwrap(),
                display_name: None,
                hint: Some("Abc".into()),
                end: Some(now() + chrono::Duration::days(5)),
                thumbprint: None,
                ..Default::default()
            }],
        });
        let verdict = check(&observations);
        assert_eq!(verdict.state, State::SecretExpiring);
        assert!(
            verdict
                .findings
                .iter()
                .any(|f| f.kind == FindingKind::SecretExpiring && f.message.contains("5.0 days"))
        );
    }

    #[test]
    fn our_certificate_is_found_by_thumbprint_and_a_planted_one_is_unknown() {
        let mut observations = healthy();
        let ours = Uuid::new_v4();
        observations.our_secret = OurSecret {
            key_id: None,
            hint: None,
            thumbprint: Some("AB".repeat(20)),
            end: None,
            known_key_ids: vec![],
        };
        if let Some(GraphObservation::Seen { value }) = &mut observations.application {
            value.clear();
            value.push(CredentialSeen {
                key_id: ours,
                display_name: Some("kodo-access".into()),
                hint: None,
                end: Some(now() + chrono::Duration::days(300)),
                thumbprint: Some("AB".repeat(20)),
                ..Default::default()
            });
        }
        let verdict = check(&observations);
        assert_eq!(verdict.state, State::Healthy, "{verdict:?}");
        assert_eq!(verdict.learned_key_id, Some(ours));
        if let Some(GraphObservation::Seen { value }) = &mut observations.application {
            value.push(CredentialSeen {
                key_id: Uuid::new_v4(),
                display_name: Some("planted".into()),
                hint: None,
                end: None,
                thumbprint: Some("CD".repeat(20)),
                ..Default::default()
            });
        }
        let verdict = check(&observations);
        assert_eq!(verdict.state, State::Degraded);
        assert!(kinds(&verdict).contains(&"unknown_credential"));
    }

    #[test]
    fn unknown_credentials_and_sharepoint_certificate_degrade() {
        let mut observations = healthy();
        if let Some(GraphObservation::Seen { value }) = &mut observations.application {
            value.push(CredentialSeen {
                key_id: Uuid::new_v4(),
                display_name: Some("backdoor".into()),
                hint: Some("Zzz".into()),
                end: None,
                thumbprint: None,
                ..Default::default()
            });
        }
        let verdict = check(&observations);
        assert_eq!(verdict.state, State::Degraded);
        assert!(kinds(&verdict).contains(&"unknown_credential"));

        let mut sharepoint = healthy();
        sharepoint.tokens.insert(
            Resource::SharePoint,
            TokenObservation::Issued {
                roles: roles_for(&all_granted(), Resource::SharePoint),
                certificate: false,
            },
        );
        sharepoint.sharepoint = Some(ProbeObservation::CertificateRequired {
            detail: "Unsupported app only token.".into(),
        });
        let verdict = check(&sharepoint);
        assert_eq!(verdict.state, State::Degraded);
        assert!(kinds(&verdict).contains(&"sharepoint_certificate_required"));
        assert!(kinds(&verdict).contains(&"acs_retirement"));
    }

    #[test]
    fn credentials_on_the_service_principal_and_federated_ones_are_unknown_credentials() {
        let mut observations = healthy();
        let planted = Uuid::new_v4();
        observations.service_principal = Some(GraphObservation::Seen {
            value: vec![CredentialSeen {
                key_id: planted,
                thumbprint: Some("AB".repeat(20)),
                place: CredentialPlace::ServicePrincipal,
                ..Default::default()
            }],
        });
        if let Some(GraphObservation::Seen { value }) = &mut observations.application {
            value.push(CredentialSeen {
                key_id: Uuid::new_v4(),
                display_name: Some("github".into()),
                issuer: Some(
                    "https://token.actions.githubusercontent.com (subject repo:x/y)".into(),
                ),
                place: CredentialPlace::Federated,
                ..Default::default()
            });
        }
        let verdict = check(&observations);
        assert_eq!(verdict.state, State::Degraded);
        let finding = verdict
            .findings
            .iter()
            .find(|f| f.kind == FindingKind::UnknownCredential)
            .unwrap();
        assert!(
            finding
                .message
                .contains("1 credential(s) on the app's service principal"),
            "{}",
            finding.message
        );
        assert!(
            finding
                .message
                .contains("1 federated identity credential(s)"),
            "{}",
            finding.message
        );
        let places: Vec<(&str, &str)> = finding
            .details
            .as_array()
            .unwrap()
            .iter()
            .map(|d| (d["place"].as_str().unwrap(), d["key_id"].as_str().unwrap()))
            .collect();
        assert!(
            places.contains(&("service_principal", planted.to_string().as_str())),
            "{places:?}"
        );
        assert!(
            places.iter().any(|(place, _)| *place == "federated"),
            "{places:?}"
        );

        // A credential on the service principal is found even when the app may not read
        // its own application.
        let mut unreadable_app = observations.clone();
        unreadable_app.application = Some(GraphObservation::Failed {
            failure: GraphFailure::Forbidden,
            detail: failure("Authorization_RequestDenied"),
        });
        let verdict = check(&unreadable_app);
        let finding = verdict
            .findings
            .iter()
            .find(|f| f.kind == FindingKind::UnknownCredential)
            .unwrap_or_else(|| panic!("{:?}", verdict.findings));
        assert_eq!(finding.details.as_array().unwrap().len(), 1, "{finding:?}");
        assert_eq!(finding.details[0]["place"], "service_principal");

        // Not allowed to read the service principal: said, not a failed check.
        let mut denied = healthy();
        denied.service_principal = Some(GraphObservation::Failed {
            failure: GraphFailure::Forbidden,
            detail: failure("Authorization_RequestDenied"),
        });
        let verdict = check(&denied);
        assert_eq!(verdict.state, State::Degraded, "{:?}", verdict.findings);
        assert!(kinds(&verdict).contains(&"graph_read_denied"));
        // Any other failure leaves the check incomplete.
        let mut failed = healthy();
        failed.service_principal = Some(GraphObservation::Failed {
            failure: GraphFailure::Throttled,
            detail: failure("TooManyRequests"),
        });
        assert_eq!(check(&failed).state, State::CheckFailed);
    }

    #[test]
    fn an_expired_certificate_is_secret_expired_and_a_valid_one_refused_is_secret_invalid() {
        let certificate = |end: DateTime<Utc>| {
            let mut observations = refused(
                healthy(),
                Resource::Graph,
                TokenFailure::CertificateRejected,
            );
            observations.our_secret.thumbprint = Some("AB".repeat(20));
            observations.our_secret.end = Some(end);
            observations
        };
        let expired = check(&certificate(now() - chrono::Duration::hours(1)));
        assert_eq!(expired.state, State::SecretExpired);
        assert!(
            expired.findings[0]
                .message
                .contains("the certificate expired on"),
            "{:?}",
            expired.findings
        );
        let refused_valid = check(&certificate(now() + chrono::Duration::days(30)));
        assert_eq!(refused_valid.state, State::SecretInvalid);
        assert!(
            refused_valid.findings[0]
                .message
                .contains("refuses the certificate")
        );
    }

    #[test]
    fn our_secret_is_found_by_hint_and_its_key_id_learned() {
        let mut observations = healthy();
        observations.our_secret = OurSecret {
            key_id: None,
            hint: Some("Abc".into()),
            end: None,
            known_key_ids: vec![],
            thumbprint: None,
        };
        let verdict = check(&observations);
        assert_eq!(verdict.state, State::Healthy, "{:?}", verdict.findings);
        assert_eq!(verdict.learned_key_id, Some(OUR_KEY.parse().unwrap()));
    }

    #[test]
    fn graph_not_found_means_app_missing() {
        let mut observations = healthy();
        observations.application = Some(GraphObservation::Failed {
            failure: GraphFailure::NotFound,
            detail: failure("404"),
        });
        assert_eq!(check(&observations).state, State::AppMissing);
    }

    #[test]
    fn every_state_has_a_name_and_needs_confirmation_only_when_access_is_gone() {
        for state in State::ALL {
            assert_eq!(State::parse(state.as_str()), Some(state));
        }
        // A second look before believing access is gone; the rest are believed at once
        // (an expired secret, a disabled app or a policy block are not transient answers).
        let gone = [
            State::ConsentRevoked,
            State::TenantNotFound,
            State::AppMissing,
            State::SecretInvalid,
            State::PermissionsMissing,
        ];
        for state in State::ALL {
            assert_eq!(
                state.needs_confirmation(),
                gone.contains(&state),
                "{}",
                state.as_str()
            );
        }
    }
}
