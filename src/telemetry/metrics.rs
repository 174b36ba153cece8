//! Every metric kodo-access exports: names, help texts and the functions that update them.
//! Every metric is described here (promtool rejects a family without HELP).

use std::time::Duration;

use metrics::{
    Unit, counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram,
};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

const BUILD_INFO: &str = "kodo_access_build_info";
const DATABASE_UP: &str = "kodo_access_database_up";
const ORGANIZATIONS: &str = "kodo_access_organizations";
const JOB_RUNS: &str = "kodo_access_job_runs_total";
const JOB_DURATION: &str = "kodo_access_job_duration_seconds";
const JOB_LAST_SUCCESS: &str = "kodo_access_job_last_success_timestamp_seconds";
const MICROSOFT_REQUESTS: &str = kodo_microsoft::REQUESTS_METRIC;
const CHECK_DURATION: &str = "kodo_access_check_duration_seconds";
const CHECKS: &str = "kodo_access_checks_total";
const ORGANIZATIONS_BY_STATE: &str = "kodo_access_organizations_by_state";
const ORGANIZATION_STATE: &str = "kodo_access_organization_state";
const SECRET_EXPIRY: &str = "kodo_access_secret_expiry_timestamp_seconds";
const LAST_SUCCESSFUL_CHECK: &str = "kodo_access_last_successful_check_timestamp_seconds";
const ALERTS_FIRING: &str = "kodo_access_alerts_firing";
const OUTBOX_PENDING: &str = "kodo_access_alert_outbox_pending";
const DELIVERY_FAILURES: &str = "kodo_access_alert_delivery_failures_total";
const DELIVERIES: &str = "kodo_access_alert_deliveries_total";
const ROTATIONS: &str = "kodo_access_rotations_total";
const ROTATION_FAILURES: &str = "kodo_access_rotation_failures_total";
const ROTATION_DURATION: &str = "kodo_access_rotation_duration_seconds";
const ROTATION_DUE: &str = "kodo_access_secret_rotation_due_timestamp_seconds";

/// Installs the process-wide recorder and returns the handle that renders the exposition;
/// `jobs` are the periodic jobs' names, whose run counters start at zero.
pub fn install(jobs: &[&'static str]) -> anyhow::Result<PrometheusHandle> {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full(JOB_DURATION.into()),
            &[0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0, 120.0, 600.0],
        )?
        .set_buckets_for_metric(
            Matcher::Full(CHECK_DURATION.into()),
            &[0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0],
        )?
        .set_buckets_for_metric(
            Matcher::Full(ROTATION_DURATION.into()),
            &[
                1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 900.0, 3600.0, 86400.0,
            ],
        )?
        .install_recorder()?;
    describe();
    gauge!(BUILD_INFO, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
    gauge!(DATABASE_UP).set(0.0);
    counter!(ROTATIONS, "outcome" => "succeeded").increment(0);
    for &job in jobs {
        for outcome in ["succeeded", "failed"] {
            counter!(JOB_RUNS, "job" => job, "outcome" => outcome).increment(0);
        }
    }
    Ok(handle)
}

fn describe() {
    describe_gauge!(
        BUILD_INFO,
        "Version of the running kodo-access, as a label; always 1."
    );
    describe_gauge!(
        DATABASE_UP,
        "1 when the last database probe succeeded, else 0."
    );
    describe_gauge!(
        ORGANIZATIONS,
        "Registered organizations, by whether monitoring is enabled."
    );
    describe_counter!(
        JOB_RUNS,
        "Finished runs of periodic jobs, by job and outcome."
    );
    describe_histogram!(
        JOB_DURATION,
        Unit::Seconds,
        "Duration of periodic job runs, by job."
    );
    describe_counter!(
        MICROSOFT_REQUESTS,
        "Requests to Microsoft, by kind (token, graph, sharepoint) and outcome (ok or the failure class)."
    );
    describe_histogram!(
        CHECK_DURATION,
        Unit::Seconds,
        "Duration of one organization's check, confirmation included."
    );
    describe_counter!(CHECKS, "Completed checks, by resulting state.");
    describe_gauge!(
        ORGANIZATIONS_BY_STATE,
        "Enabled organizations, by current state."
    );
    describe_gauge!(ALERTS_FIRING, "Alerts currently firing, by kind.");
    describe_gauge!(
        OUTBOX_PENDING,
        "Alert notifications waiting for delivery, by sink."
    );
    describe_counter!(
        DELIVERY_FAILURES,
        "Failed attempts to deliver alert notifications, by sink."
    );
    describe_counter!(DELIVERIES, "Alert notifications delivered, by sink.");
    describe_counter!(
        ROTATIONS,
        "Secret rotations finished (the replaced secret removed), by outcome."
    );
    describe_counter!(
        ROTATION_FAILURES,
        "Failed rotation attempts, by reason (each is retried with backoff)."
    );
    describe_histogram!(
        ROTATION_DURATION,
        Unit::Seconds,
        "Time from a rotation's start to its new secret becoming current (retries included)."
    );
    describe_gauge!(
        JOB_LAST_SUCCESS,
        Unit::Seconds,
        "Unix time of the last successful run of each periodic job."
    );
}

pub fn database_up(up: bool) {
    gauge!(DATABASE_UP).set(if up { 1.0 } else { 0.0 });
}

pub fn organizations(enabled: bool, count: i64) {
    gauge!(ORGANIZATIONS, "enabled" => if enabled { "true" } else { "false" }).set(count as f64);
}

pub fn job_finished(job: &'static str, outcome: &'static str, elapsed: Duration) {
    counter!(JOB_RUNS, "job" => job, "outcome" => outcome).increment(1);
    histogram!(JOB_DURATION, "job" => job).record(elapsed.as_secs_f64());
    if outcome == "succeeded" {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        gauge!(JOB_LAST_SUCCESS, "job" => job).set(now.as_secs_f64());
    }
}

pub fn check_finished(state: &'static str, elapsed: Duration) {
    counter!(CHECKS, "state" => state).increment(1);
    histogram!(CHECK_DURATION).record(elapsed.as_secs_f64());
}

pub fn rotation_failed(reason: &'static str) {
    counter!(ROTATION_FAILURES, "reason" => reason).increment(1);
}

pub fn rotation_activated(elapsed: Duration) {
    histogram!(ROTATION_DURATION).record(elapsed.as_secs_f64());
}

pub fn rotation_finished() {
    counter!(ROTATIONS, "outcome" => "succeeded").increment(1);
}

pub fn delivery(sink: &str, ok: bool, count: u64) {
    if ok {
        counter!(DELIVERIES, "sink" => sink.to_string()).increment(count);
    } else {
        counter!(DELIVERY_FAILURES, "sink" => sink.to_string()).increment(count);
    }
}

static EMITTED_KINDS: std::sync::LazyLock<std::sync::Mutex<std::collections::BTreeSet<String>>> =
    std::sync::LazyLock::new(Default::default);

/// The fleet as read from the database at scrape time.
pub struct FleetSnapshot {
    /// Enabled organizations by state, every state named (zero where none is in it).
    pub states: Vec<(&'static str, i64)>,
    pub firing: Vec<(String, i64)>,
    pub outbox: Vec<(String, i64)>,
}

/// One enabled organization's per-organization series.
pub struct OrganizationGauge {
    pub name: String,
    pub state: crate::domain::State,
    pub secret_expires: Option<f64>,
    pub last_success: Option<f64>,
    pub rotation_due: Option<f64>,
}

/// Sets the fleet-wide gauges; alert kinds no longer firing drop to zero.
pub fn fleet(snapshot: &FleetSnapshot) {
    for &(state, count) in &snapshot.states {
        gauge!(ORGANIZATIONS_BY_STATE, "state" => state).set(count as f64);
    }
    let mut kinds = EMITTED_KINDS.lock().expect("metrics lock");
    for kind in kinds.iter() {
        if !snapshot.firing.iter().any(|(k, _)| k == kind) {
            gauge!(ALERTS_FIRING, "kind" => kind.clone()).set(0.0);
        }
    }
    for (kind, count) in &snapshot.firing {
        gauge!(ALERTS_FIRING, "kind" => kind.clone()).set(*count as f64);
        kinds.insert(kind.clone());
    }
    for (sink, count) in &snapshot.outbox {
        gauge!(OUTBOX_PENDING, "sink" => sink.clone()).set(*count as f64);
    }
}

/// The per-organization families, rendered at scrape time from the rows of the enabled
/// organizations: a disabled organization has no series (so no rule fires for it), a
/// removed one is gone at the next scrape, and nothing per organization is held between
/// scrapes. Prometheus text format, with HELP and TYPE like the recorder's families.
pub fn render_organizations(organizations: &[OrganizationGauge]) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(64 + organizations.len() * 256);
    let family = |out: &mut String, name: &str, help: &str| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
    };
    family(
        &mut out,
        ORGANIZATION_STATE,
        "1 for each enabled organization's current state (label state).",
    );
    for organization in organizations {
        let _ = writeln!(
            out,
            "{ORGANIZATION_STATE}{{organization=\"{}\",state=\"{}\"}} 1",
            escape_label(&organization.name),
            organization.state.as_str()
        );
    }
    type Family = (
        &'static str,
        &'static str,
        fn(&OrganizationGauge) -> Option<f64>,
    );
    let timestamps: [Family; 3] = [
        (
            SECRET_EXPIRY,
            "Unix time the enabled organization's current client secret expires.",
            |o| o.secret_expires,
        ),
        (
            LAST_SUCCESSFUL_CHECK,
            "Unix time of the enabled organization's last check that completed.",
            |o| o.last_success,
        ),
        (
            ROTATION_DUE,
            "Unix time the enabled organization's secret is next rotated (or its unfinished rotation retried).",
            |o| o.rotation_due,
        ),
    ];
    for (name, help, value) in timestamps {
        family(&mut out, name, help);
        for organization in organizations {
            if let Some(value) = value(organization) {
                let _ = writeln!(
                    out,
                    "{name}{{organization=\"{}\"}} {value}",
                    escape_label(&organization.name)
                );
            }
        }
    }
    out
}

/// A label value in the text format: backslash, double quote and newline escaped.
fn escape_label(value: &str) -> std::borrow::Cow<'_, str> {
    if !value.contains(['\\', '"', '\n']) {
        return value.into();
    }
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn organizations_are_rendered_with_help_type_and_escaped_labels() {
        let text = render_organizations(&[
            OrganizationGauge {
                name: "contoso".into(),
                state: crate::domain::State::Healthy,
                secret_expires: Some(1_800_000_000.0),
                last_success: None,
                rotation_due: Some(1_790_000_000.0),
            },
            OrganizationGauge {
                name: "odd\"name".into(),
                state: crate::domain::State::ConsentRevoked,
                secret_expires: None,
                last_success: Some(1_700_000_000.0),
                rotation_due: None,
            },
        ]);
        assert!(text.contains("# TYPE kodo_access_organization_state gauge\n"));
        assert!(text.contains(
            "kodo_access_organization_state{organization=\"contoso\",state=\"healthy\"} 1\n"
        ));
        assert!(text.contains("organization=\"odd\\\"name\""));
        assert!(text.contains(
            "kodo_access_secret_expiry_timestamp_seconds{organization=\"contoso\"} 1800000000\n"
        ));
        assert!(!text.contains(
            "kodo_access_last_successful_check_timestamp_seconds{organization=\"contoso\"}"
        ));
        assert_eq!(render_organizations(&[]).lines().count(), 8);
    }
}
