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

/// Installs the process-wide recorder and returns the handle that renders the exposition.
pub fn install() -> anyhow::Result<PrometheusHandle> {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full(JOB_DURATION.into()),
            &[0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0, 120.0, 600.0],
        )?
        .install_recorder()?;
    describe();
    gauge!(BUILD_INFO, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
    gauge!(DATABASE_UP).set(0.0);
    for &job in crate::jobs::JobName::ALL {
        for outcome in ["succeeded", "failed"] {
            counter!(JOB_RUNS, "job" => job.as_str(), "outcome" => outcome).increment(0);
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
