//! The shipped Prometheus alert rules pass `promtool check rules` and their unit tests.

use std::process::Command;

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/config/prometheus");

#[test]
fn alert_rules_are_valid_and_their_tests_pass() {
    for args in [
        ["check", "rules", "kodo-access.rules.yml"],
        ["test", "rules", "kodo-access.rules.test.yml"],
    ] {
        let output = Command::new("promtool")
            .args(args)
            .current_dir(DIR)
            .output()
            .expect("promtool is installed (scripts/ensure-deps)");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(
            output.status.success() && text.contains("SUCCESS"),
            "promtool {args:?}:\n{text}"
        );
    }
}

/// Per-organization series come from the rows at scrape time: a disabled organization has
/// none and a removed one is gone, so the shipped rules fire for neither. Checked on what
/// the daemon really exports, then with promtool on the same series.
#[sqlx::test]
async fn disabled_and_removed_organizations_have_no_series_and_no_rule_fires_for_them(
    pool: sqlx::PgPool,
) {
    use crate::sim_support::Sim;
    use crate::support::{TestEnv, eventually};
    const NAMES: [&str; 3] = ["contoso", "fabrikam", "northwind"];
    let tenant = |i: usize| format!("6f1c3f2e-4c55-4a8b-9d2e-0b7c1a2d3e{i:02}");
    let app = |i: usize| format!("0d9a8b7c-6e5f-4a3b-8c2d-1e0f9a8b7c{i:02}");
    let secret = |i: usize| format!("Rul8Q~rules-secret-{i:04}-0000000000000000");
    let scenario: String = (0..3)
        .map(|i| {
            format!(
                "[[tenants]]\nid = \"{}\"\n[[tenants.apps]]\napp_id = \"{}\"\npermissions = \"all\"\n[[tenants.apps.secrets]]\nvalue = \"{}\"\nexpires_in_days = 200\n",
                tenant(i),
                app(i),
                secret(i)
            )
        })
        .collect();
    let sim = Sim::start(&scenario).await;
    let env = TestEnv::with_extra(&pool, &crate::checks::config(&sim, ""));
    for (i, name) in NAMES.iter().enumerate() {
        env.exec_with_stdin(
            &[
                "org",
                "add",
                "--name",
                name,
                "--tenant-id",
                &tenant(i),
                "--client-id",
                &app(i),
                "--cloud",
                "sim",
            ],
            &secret(i),
        )
        .await
        .success();
    }
    let daemon = crate::daemon_support::Daemon::start(&env, &[]);
    daemon.wait_ready().await;
    eventually(
        std::time::Duration::from_secs(30),
        "every organization checked once",
        || async {
            let checked: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM organization_status WHERE last_success_at IS NOT NULL",
            )
            .fetch_one(&pool)
            .await
            .unwrap();
            checked == 3
        },
    )
    .await;
    let (_, before) = daemon.get("/metrics").await.unwrap();
    for name in NAMES {
        let series = format!(
            "kodo_access_last_successful_check_timestamp_seconds{{organization=\"{name}\"}}"
        );
        assert!(before.contains(&series), "{series} missing:\n{before}");
    }
    env.exec(&["org", "disable", "fabrikam"]).await.success();
    env.exec(&["org", "remove", "northwind", "--yes"])
        .await
        .success();
    // The gauges are read from the database at most every 2 s.
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let (_, after) = daemon.get("/metrics").await.unwrap();
    crate::support::assert_promtool_clean(&after);
    let per_organization: Vec<&str> = after
        .lines()
        .filter(|line| line.contains("organization=\""))
        .collect();
    assert!(
        per_organization
            .iter()
            .all(|line| line.contains("organization=\"contoso\"")),
        "{per_organization:#?}"
    );
    assert!(
        after.contains("kodo_access_organizations{enabled=\"false\"} 1"),
        "{after}"
    );

    // The shipped rules on exactly these series: a check an hour and ten minutes old (each
    // series' value set to 0 on promtool's clock) fires for contoso and nobody else.
    let input: Vec<String> = per_organization
        .iter()
        .filter(|line| line.starts_with("kodo_access_last_successful_check_timestamp_seconds"))
        .map(|line| {
            let series = line.rsplit_once(' ').unwrap().0;
            format!("      - series: '{series}'\n        values: '0x100'")
        })
        .collect();
    assert_eq!(input.len(), 1, "{input:#?}");
    let dir = tempfile::tempdir().unwrap();
    let test = dir.path().join("scraped.test.yml");
    std::fs::write(
        &test,
        format!(
            "rule_files:\n  - {DIR}/kodo-access.rules.yml\nevaluation_interval: 1m\ntests:\n  - interval: 1m\n    input_series:\n{}\n    alert_rule_test:\n      - eval_time: 70m\n        alertname: KodoAccessNoSuccessfulCheck\n        exp_alerts:\n          - exp_labels:\n              severity: warning\n              organization: contoso\n            exp_annotations:\n              summary: \"contoso: no successful access check for over an hour\"\n              action: \"see `kodo-access org show contoso` and the kodo-access log\"\n",
            input.join("\n")
        ),
    )
    .unwrap();
    let output = Command::new("promtool")
        .args(["test", "rules"])
        .arg(&test)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let (code, log) = daemon.terminate().await;
    assert_eq!(code, 0, "{log}");
    sim.running.stop().await;
}
