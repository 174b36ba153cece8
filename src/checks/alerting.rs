//! When an alert fires and when it resolves: a pure function of a check's verdict and the
//! alerts already firing. One lifecycle per (organization, kind).

use std::collections::BTreeMap;

use uuid::Uuid;

use super::verdict::{State, Verdict};
use crate::domain::FindingKind;
use crate::store::alerts::FiringRow;

/// Who the alert is about: the identifying labels.
pub struct Subject<'a> {
    pub organization: &'a str,
    pub tenant_id: Uuid,
    pub client_id: Uuid,
    pub labels: &'a BTreeMap<String, String>,
    pub admin_consent_url: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AlertContent {
    pub kind: String,
    pub severity: String,
    pub labels: serde_json::Value,
    pub annotations: serde_json::Value,
}

#[derive(Debug, Default)]
pub struct Plan {
    pub fire: Vec<AlertContent>,
    pub resolve: Vec<FiringRow>,
    /// Firing alerts whose text changed (a new reason, fewer days left): (id, annotations).
    /// Alertmanager sees the new text at the next re-send.
    pub update: Vec<(Uuid, serde_json::Value)>,
}

/// `consent_revoked` -> `KodoAccessConsentRevoked`.
pub use crate::domain::findings::alertname;

fn content(subject: &Subject<'_>, kind: FindingKind, message: &str) -> AlertContent {
    let mut labels = serde_json::Map::new();
    // Operator labels first, so the identifying labels below always win.
    for (key, value) in subject.labels {
        labels.insert(key.clone(), serde_json::json!(value));
    }
    labels.insert("alertname".into(), serde_json::json!(kind.alertname()));
    labels.insert(
        "severity".into(),
        serde_json::json!(kind.severity().as_str()),
    );
    labels.insert(
        "organization".into(),
        serde_json::json!(subject.organization),
    );
    labels.insert(
        "tenant_id".into(),
        serde_json::json!(subject.tenant_id.to_string()),
    );
    labels.insert(
        "client_id".into(),
        serde_json::json!(subject.client_id.to_string()),
    );
    labels.insert("kind".into(), serde_json::json!(kind.as_str()));
    let mut annotations = serde_json::json!({
        "summary": format!("{}: {message}", subject.organization),
        "action": kind.action().unwrap_or_default(),
    });
    if kind.carries_consent_url() {
        annotations["admin_consent_url"] = serde_json::json!(subject.admin_consent_url);
    }
    AlertContent {
        kind: kind.as_str().to_string(),
        severity: kind.severity().as_str().to_string(),
        labels: serde_json::Value::Object(labels),
        annotations,
    }
}

/// What to fire and what to resolve after a check with `verdict`. While checks fail to
/// complete, nothing resolves and nothing new fires except `check_failing` once the
/// failures have lasted `failing_too_long`.
pub fn plan(
    verdict: &Verdict,
    subject: &Subject<'_>,
    firing: &[FiringRow],
    failing_too_long: bool,
) -> Plan {
    let is_firing = |kind: &str| firing.iter().any(|row| row.kind == kind);
    let mut plan = Plan::default();
    if verdict.state == State::CheckFailed {
        if failing_too_long && !is_firing(FindingKind::CheckFailing.as_str()) {
            let reason = verdict
                .findings
                .iter()
                .find(|f| f.kind == FindingKind::CheckIncomplete)
                .map(|f| f.message.as_str())
                .unwrap_or("checks fail to complete");
            plan.fire
                .push(content(subject, FindingKind::CheckFailing, reason));
        }
        return plan;
    }
    let mut wanted = Vec::new();
    for finding in &verdict.findings {
        if finding.kind.is_alert() && !wanted.contains(&finding.kind.as_str()) {
            wanted.push(finding.kind.as_str());
            let alert = content(subject, finding.kind, &finding.message);
            match firing.iter().find(|row| row.kind == finding.kind.as_str()) {
                None => plan.fire.push(alert),
                Some(row) if row.annotations != alert.annotations => {
                    plan.update.push((row.id, alert.annotations))
                }
                Some(_) => {}
            }
        }
    }
    plan.resolve = firing
        .iter()
        .filter(|row| !wanted.contains(&row.kind.as_str()))
        .cloned()
        .collect();
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::verdict::{Finding, Severity};

    fn subject(labels: &BTreeMap<String, String>) -> Subject<'_> {
        Subject {
            organization: "contoso",
            tenant_id: Uuid::nil(),
            client_id: Uuid::nil(),
            labels,
            admin_consent_url: "https://login.microsoftonline.com/t/adminconsent?client_id=c"
                .into(),
        }
    }

    fn verdict(state: State, kinds: &[(&str, Severity)]) -> Verdict {
        Verdict {
            state,
            findings: kinds
                .iter()
                .map(|(kind, severity)| Finding {
                    kind: FindingKind::parse(kind).expect("a finding kind"),
                    severity: *severity,
                    message: format!("{kind} happened"),
                    details: serde_json::Value::Null,
                })
                .collect(),
            secret_expires_at: None,
            learned_key_id: None,
        }
    }

    fn firing(kind: &str) -> FiringRow {
        FiringRow {
            id: Uuid::new_v4(),
            kind: kind.into(),
            started_at: chrono::Utc::now(),
            labels: serde_json::Value::Null,
            annotations: serde_json::Value::Null,
            severity: "critical".into(),
        }
    }

    #[test]
    fn a_firing_alert_whose_text_changed_is_updated_not_fired_again() {
        let labels = BTreeMap::new();
        let subject = subject(&labels);
        let verdict = verdict(State::Degraded, &[("rotation_failing", Severity::Warning)]);
        let mut row = firing("rotation_failing");
        row.annotations = content(&subject, FindingKind::RotationFailing, "old reason").annotations;
        let plan = plan(&verdict, &subject, std::slice::from_ref(&row), false);
        assert!(plan.fire.is_empty() && plan.resolve.is_empty());
        assert_eq!(plan.update.len(), 1);
        assert_eq!(
            plan.update[0].1["summary"],
            "contoso: rotation_failing happened"
        );
        // Unchanged text: nothing to do.
        row.annotations = plan.update[0].1.clone();
        let plan = super::plan(&verdict, &subject, &[row], false);
        assert!(plan.update.is_empty());
    }

    #[test]
    fn fires_new_problems_and_resolves_healed_ones() {
        let labels = BTreeMap::from([
            ("env".to_string(), "prod".to_string()),
            ("organization".to_string(), "spoof".to_string()),
        ]);
        let revoked = verdict(
            State::ConsentRevoked,
            &[
                ("consent_revoked", Severity::Critical),
                ("roles_disagree", Severity::Info),
            ],
        );
        let plan = plan(
            &revoked,
            &subject(&labels),
            &[firing("secret_expiring")],
            false,
        );
        assert_eq!(plan.fire.len(), 1);
        let alert = &plan.fire[0];
        assert_eq!(alert.labels["alertname"], "KodoAccessConsentRevoked");
        assert_eq!(alert.labels["severity"], "critical");
        assert_eq!(
            alert.labels["organization"], "contoso",
            "identifying labels win over operator labels"
        );
        assert_eq!(alert.labels["env"], "prod");
        assert!(
            alert.annotations["admin_consent_url"]
                .as_str()
                .unwrap()
                .contains("adminconsent")
        );
        assert_eq!(
            plan.resolve
                .iter()
                .map(|r| r.kind.as_str())
                .collect::<Vec<_>>(),
            ["secret_expiring"]
        );

        let still = super::plan(
            &revoked,
            &subject(&labels),
            &[firing("consent_revoked")],
            false,
        );
        assert!(
            still.fire.is_empty() && still.resolve.is_empty(),
            "an alert fires once per lifecycle"
        );

        let healed = super::plan(
            &verdict(State::Healthy, &[]),
            &subject(&labels),
            &[firing("consent_revoked")],
            false,
        );
        assert_eq!(healed.resolve.len(), 1);
    }

    #[test]
    fn failed_checks_keep_alerts_and_fire_check_failing_only_after_a_while() {
        let labels = BTreeMap::new();
        let failed = verdict(
            State::CheckFailed,
            &[("check_incomplete", Severity::Warning)],
        );
        let early = plan(
            &failed,
            &subject(&labels),
            &[firing("consent_revoked")],
            false,
        );
        assert!(early.fire.is_empty() && early.resolve.is_empty());
        let late = plan(
            &failed,
            &subject(&labels),
            &[firing("consent_revoked")],
            true,
        );
        assert_eq!(
            late.fire
                .iter()
                .map(|a| a.kind.as_str())
                .collect::<Vec<_>>(),
            ["check_failing"]
        );
        assert!(late.resolve.is_empty());
        let recovered = plan(
            &verdict(State::Healthy, &[]),
            &subject(&labels),
            &[firing("check_failing"), firing("consent_revoked")],
            false,
        );
        assert_eq!(recovered.resolve.len(), 2);
    }

    #[test]
    fn alertnames() {
        assert_eq!(alertname("secret_expiring"), "KodoAccessSecretExpiring");
        assert_eq!(alertname("ews_retirement"), "KodoAccessEwsRetirement");
    }
}
