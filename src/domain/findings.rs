//! What a check can find, as one vocabulary: each finding kind owns its name (also the
//! alert kind and, as `KodoAccess…`, the Alertmanager alertname), its severity, whether it
//! is an alert and what the operator should do about it, and whether the alert carries
//! the tenant's admin-consent URL. Adding a kind means deciding all of this: the matches
//! below are exhaustive.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Info,
    Warning,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FindingKind {
    ConsentRevoked,
    PermissionsMissing,
    SecretInvalid,
    SecretExpired,
    SecretExpiring,
    AppMissing,
    AppDisabled,
    TenantNotFound,
    BlockedByPolicy,
    WrongCloud,
    UnknownCredential,
    RotationOverdue,
    RotationFailing,
    RotationNotAuthorized,
    RotationSecretsNotAllowed,
    RotationPermissionMissing,
    SharepointCertificateRequired,
    SharepointRefused,
    ResourceUnavailable,
    ResourceNotConfigured,
    GraphReadDenied,
    RolesDisagree,
    PermissionsExtra,
    EwsRetirement,
    AcsRetirement,
    CheckIncomplete,
    CheckFailing,
}

impl FindingKind {
    pub const ALL: [FindingKind; 27] = [
        FindingKind::ConsentRevoked,
        FindingKind::PermissionsMissing,
        FindingKind::SecretInvalid,
        FindingKind::SecretExpired,
        FindingKind::SecretExpiring,
        FindingKind::AppMissing,
        FindingKind::AppDisabled,
        FindingKind::TenantNotFound,
        FindingKind::BlockedByPolicy,
        FindingKind::WrongCloud,
        FindingKind::UnknownCredential,
        FindingKind::RotationOverdue,
        FindingKind::RotationFailing,
        FindingKind::RotationNotAuthorized,
        FindingKind::RotationSecretsNotAllowed,
        FindingKind::RotationPermissionMissing,
        FindingKind::SharepointCertificateRequired,
        FindingKind::SharepointRefused,
        FindingKind::ResourceUnavailable,
        FindingKind::ResourceNotConfigured,
        FindingKind::GraphReadDenied,
        FindingKind::RolesDisagree,
        FindingKind::PermissionsExtra,
        FindingKind::EwsRetirement,
        FindingKind::AcsRetirement,
        FindingKind::CheckIncomplete,
        FindingKind::CheckFailing,
    ];

    /// The stable identifier: in check history, the alerts table and alert labels.
    pub fn as_str(self) -> &'static str {
        match self {
            FindingKind::ConsentRevoked => "consent_revoked",
            FindingKind::PermissionsMissing => "permissions_missing",
            FindingKind::SecretInvalid => "secret_invalid",
            FindingKind::SecretExpired => "secret_expired",
            FindingKind::SecretExpiring => "secret_expiring",
            FindingKind::AppMissing => "app_missing",
            FindingKind::AppDisabled => "app_disabled",
            FindingKind::TenantNotFound => "tenant_not_found",
            FindingKind::BlockedByPolicy => "blocked_by_policy",
            FindingKind::WrongCloud => "wrong_cloud",
            FindingKind::UnknownCredential => "unknown_credential",
            FindingKind::RotationOverdue => "rotation_overdue",
            FindingKind::RotationFailing => "rotation_failing",
            FindingKind::RotationNotAuthorized => "rotation_not_authorized",
            FindingKind::RotationSecretsNotAllowed => "rotation_secrets_not_allowed",
            FindingKind::RotationPermissionMissing => "rotation_permission_missing",
            FindingKind::SharepointCertificateRequired => "sharepoint_certificate_required",
            FindingKind::SharepointRefused => "sharepoint_refused",
            FindingKind::ResourceUnavailable => "resource_unavailable",
            FindingKind::ResourceNotConfigured => "resource_not_configured",
            FindingKind::GraphReadDenied => "graph_read_denied",
            FindingKind::RolesDisagree => "roles_disagree",
            FindingKind::PermissionsExtra => "permissions_extra",
            FindingKind::EwsRetirement => "ews_retirement",
            FindingKind::AcsRetirement => "acs_retirement",
            FindingKind::CheckIncomplete => "check_incomplete",
            FindingKind::CheckFailing => "check_failing",
        }
    }

    pub fn parse(kind: &str) -> Option<FindingKind> {
        FindingKind::ALL
            .into_iter()
            .find(|candidate| candidate.as_str() == kind)
    }

    pub fn severity(self) -> Severity {
        match self {
            FindingKind::ConsentRevoked
            | FindingKind::PermissionsMissing
            | FindingKind::SecretInvalid
            | FindingKind::SecretExpired
            | FindingKind::AppMissing
            | FindingKind::AppDisabled
            | FindingKind::TenantNotFound
            | FindingKind::BlockedByPolicy
            | FindingKind::WrongCloud
            | FindingKind::RotationOverdue => Severity::Critical,
            FindingKind::SecretExpiring
            | FindingKind::UnknownCredential
            | FindingKind::RotationFailing
            | FindingKind::RotationNotAuthorized
            | FindingKind::RotationSecretsNotAllowed
            | FindingKind::RotationPermissionMissing
            | FindingKind::SharepointCertificateRequired
            | FindingKind::SharepointRefused
            | FindingKind::ResourceUnavailable
            | FindingKind::GraphReadDenied
            | FindingKind::CheckIncomplete
            | FindingKind::CheckFailing => Severity::Warning,
            FindingKind::ResourceNotConfigured
            | FindingKind::RolesDisagree
            | FindingKind::PermissionsExtra
            | FindingKind::EwsRetirement
            | FindingKind::AcsRetirement => Severity::Info,
        }
    }

    /// What the operator should do, for the kinds that are alerts; `None` for the kinds
    /// that are not (each says why).
    pub fn action(self) -> Option<&'static str> {
        Some(match self {
            FindingKind::ConsentRevoked => {
                "a tenant admin must grant admin consent again (admin_consent_url)"
            }
            FindingKind::PermissionsMissing => {
                "a tenant admin must grant the missing application permissions and consent again (admin_consent_url)"
            }
            FindingKind::SecretInvalid => {
                "store the app's valid client secret: kodo-access org set-secret ORG"
            }
            FindingKind::SecretExpired => {
                "create a new client secret in the app registration and store it: kodo-access org set-secret ORG"
            }
            FindingKind::SecretExpiring => {
                "kodo-access does not rotate this secret: create a new one and store it (kodo-access org set-secret ORG), or turn rotation on (org set ORG --rotation on, with a [[rotation.*]] deliverer)"
            }
            FindingKind::AppMissing => {
                "the app registration or its service principal is gone from the tenant: register it again, or check the tenant and client ids"
            }
            FindingKind::AppDisabled => {
                "enable the app's enterprise application (service principal) in the tenant"
            }
            FindingKind::TenantNotFound => {
                "the tenant is gone or in another cloud: check the tenant id and --cloud"
            }
            FindingKind::BlockedByPolicy => {
                "exclude the app from the Conditional Access or tenant-restriction policy that blocks it"
            }
            // Not an alert: the check cannot complete: `check_failing` fires for it once checks have failed long enough, its reason naming the wrong cloud.
            FindingKind::WrongCloud => return None,
            FindingKind::UnknownCredential => {
                "a client secret kodo-access does not know is on the app: find out who added it; remove it if nobody did"
            }
            FindingKind::RotationOverdue => {
                "the secret expires soon and has not been replaced: fix the reason given, then `kodo-access rotate ORG`; `kodo-access rotations ORG` shows the attempts"
            }
            FindingKind::RotationFailing => {
                "secret rotation keeps failing: see the reason, `kodo-access rotations ORG` and the log; it is retried with backoff"
            }
            FindingKind::RotationNotAuthorized => {
                "grant the app Application.ReadWrite.OwnedBy (admin consent) and make its service principal an owner of its application object: POST https://graph.microsoft.com/v1.0/applications/{object-id}/owners/$ref with {\"@odata.id\": \"https://graph.microsoft.com/v1.0/directoryObjects/{service-principal-id}\"}"
            }
            FindingKind::RotationSecretsNotAllowed => {
                "the tenant's app-management policy blocks client secrets for this app: move it to a certificate (kodo-access org set ORG --credential certificate; it needs the rotation permission and the app owning itself, or Application.ReadWrite.All), or exempt the app from the policy"
            }
            FindingKind::RotationPermissionMissing => {
                "grant Application.ReadWrite.OwnedBy and make the app's service principal an owner of its application object"
            }
            FindingKind::SharepointCertificateRequired => {
                "SharePoint REST takes only certificate-based tokens: move the organization to a certificate (kodo-access org set ORG --credential certificate), or check it on Graph and Exchange only (org set ORG --resources graph,exchange)"
            }
            FindingKind::SharepointRefused => {
                "check the SharePoint host and the app's SharePoint permissions"
            }
            FindingKind::ResourceUnavailable => {
                "check the tenant's licences and the organization's SharePoint host"
            }
            // Not an alert: the operator chose not to check the resource.
            FindingKind::ResourceNotConfigured => return None,
            FindingKind::GraphReadDenied => {
                "grant Application.Read.All (the least that works), or Application.ReadWrite.OwnedBy with the app's service principal an owner of its application, so the app can read its own registration"
            }
            // Not an alert: Microsoft's replication catching up; it settles by itself.
            FindingKind::RolesDisagree => return None,
            // Not an alert: more than required is no risk to backups.
            FindingKind::PermissionsExtra => return None,
            FindingKind::EwsRetirement => {
                "move mailbox backup from EWS to Microsoft Graph before EWS is switched off"
            }
            FindingKind::AcsRetirement => {
                "use certificate-based Entra app-only access for SharePoint; appinv.aspx grants no longer work"
            }
            // Not an alert: one check that could not complete is no news; `check_failing` fires when it lasts.
            FindingKind::CheckIncomplete => return None,
            FindingKind::CheckFailing => {
                "checks of this organization keep failing to complete: see `kodo-access org show ORG` and the log"
            }
        })
    }

    pub fn is_alert(self) -> bool {
        self.action().is_some()
    }

    /// Whether the alert carries the tenant's admin-consent URL (the fix is a consent).
    pub fn carries_consent_url(self) -> bool {
        match self {
            FindingKind::ConsentRevoked
            | FindingKind::PermissionsMissing
            | FindingKind::RotationNotAuthorized
            | FindingKind::RotationPermissionMissing => true,
            FindingKind::SecretInvalid
            | FindingKind::SecretExpired
            | FindingKind::SecretExpiring
            | FindingKind::AppMissing
            | FindingKind::AppDisabled
            | FindingKind::TenantNotFound
            | FindingKind::BlockedByPolicy
            | FindingKind::WrongCloud
            | FindingKind::UnknownCredential
            | FindingKind::RotationOverdue
            | FindingKind::RotationFailing
            | FindingKind::RotationSecretsNotAllowed
            | FindingKind::SharepointCertificateRequired
            | FindingKind::SharepointRefused
            | FindingKind::ResourceUnavailable
            | FindingKind::ResourceNotConfigured
            | FindingKind::GraphReadDenied
            | FindingKind::RolesDisagree
            | FindingKind::PermissionsExtra
            | FindingKind::EwsRetirement
            | FindingKind::AcsRetirement
            | FindingKind::CheckIncomplete
            | FindingKind::CheckFailing => false,
        }
    }

    /// `consent_revoked` -> `KodoAccessConsentRevoked`.
    pub fn alertname(self) -> String {
        alertname(self.as_str())
    }
}

impl std::fmt::Display for FindingKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `consent_revoked` -> `KodoAccessConsentRevoked`.
pub fn alertname(kind: &str) -> String {
    let mut name = String::from("KodoAccess");
    for word in kind.split('_') {
        let mut chars = word.chars();
        if let Some(first) = chars.next() {
            name.extend(first.to_uppercase());
            name.push_str(chars.as_str());
        }
    }
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_round_trips_and_every_alert_says_what_to_do() {
        for kind in FindingKind::ALL {
            assert_eq!(FindingKind::parse(kind.as_str()), Some(kind));
            let json = serde_json::to_string(&kind).unwrap();
            assert_eq!(json, format!("\"{kind}\""));
            if let Some(action) = kind.action() {
                assert!(!action.is_empty(), "{kind}");
            }
            assert!(!kind.carries_consent_url() || kind.is_alert(), "{kind}");
        }
        assert_eq!(
            FindingKind::ConsentRevoked.alertname(),
            "KodoAccessConsentRevoked"
        );
        // Critical findings that are not alerts are decided on purpose.
        let silent_critical: Vec<_> = FindingKind::ALL
            .into_iter()
            .filter(|kind| kind.severity() == Severity::Critical && !kind.is_alert())
            .collect();
        assert_eq!(silent_critical, [FindingKind::WrongCloud]);
    }
}
