//! Three daemons, one database (issue 5's "several daemons"): with hundreds of
//! organizations due at once, every secret is replaced exactly once, whichever daemon
//! does it, and each app ends with exactly its one new secret.

use std::time::Duration;

use sqlx::PgPool;

use crate::daemon_support::Daemon;
use crate::sim_support::Sim;
use crate::support::*;

const ORGANIZATIONS: usize = 300;

fn tenant(i: usize) -> uuid::Uuid {
    uuid::Uuid::new_v5(
        &uuid::Uuid::NAMESPACE_OID,
        format!("fleet-tenant-{i}").as_bytes(),
    )
}

fn app(i: usize) -> uuid::Uuid {
    uuid::Uuid::new_v5(
        &uuid::Uuid::NAMESPACE_OID,
        format!("fleet-app-{i}").as_bytes(),
    )
}

fn key(i: usize) -> uuid::Uuid {
    uuid::Uuid::new_v5(
        &uuid::Uuid::NAMESPACE_OID,
        format!("fleet-key-{i}").as_bytes(),
    )
}

#[sqlx::test]
async fn three_daemons_rotate_hundreds_of_organizations_exactly_once(pool: PgPool) {
    // Every secret expires in 5 days (due); Microsoft takes 2 s to accept a new one, so
    // the daemons' passes overlap while rotations wait.
    let mut scenario = String::from("[faults]\npropagation_delay_secs = 2\n");
    for i in 0..ORGANIZATIONS {
        scenario.push_str(&format!(
            "[[tenants]]\nid = \"{}\"\n[[tenants.apps]]\napp_id = \"{}\"\npermissions = \"all\"\n[[tenants.apps.secrets]]\nvalue = \"Flt8Q~fleet-secret-{i:04}\"\nkey_id = \"{}\"\ndisplay_name = \"by hand\"\nexpires_in_days = 5\n",
            tenant(i),
            app(i),
            key(i)
        ));
    }
    let sim = Sim::start(&scenario).await;
    let backup_dir = tempfile::tempdir().unwrap();
    let extra = format!(
        "[rotation]\ngrace = \"1s\"\nverify_timeout = \"60s\"\npickup_interval = \"1s\"\n[[rotation.file]]\ndirectory = \"{}\"\nmode = \"0600\"\n",
        backup_dir.path().display()
    );
    let env = TestEnv::with_extra(&pool, &crate::checks::config(&sim, &extra));
    let expires = (chrono::Utc::now() + chrono::Duration::days(5)).to_rfc3339();
    let organizations: Vec<serde_json::Value> = (0..ORGANIZATIONS)
        .map(|i| {
            serde_json::json!({
                "name": format!("org-{i:04}"),
                "tenant_id": tenant(i),
                "client_id": app(i),
                "secret": format!("Flt8Q~fleet-secret-{i:04}"),
                "secret_id": key(i),
                "secret_expires": expires,
                "cloud": "sim",
            })
        })
        .collect();
    let import = env.path("organizations.json");
    write_file(
        &import,
        &serde_json::to_string(&organizations).unwrap(),
        0o600,
    );
    env.exec(&["org", "import", import.to_str().unwrap()])
        .await
        .success();

    let daemons: Vec<Daemon> = (0..3)
        .map(|_| {
            let port = free_port();
            let listen = format!("127.0.0.1:{port}");
            let mut daemon = Daemon::start(&env, &[("KODO_ACCESS__HTTP__LISTEN", listen.as_str())]);
            daemon.port = port;
            daemon
        })
        .collect();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(180);
    loop {
        let steps: Vec<(String, Option<String>, i64)> = sqlx::query_as(
            "SELECT step, failure_reason, count(*) FROM rotations GROUP BY 1, 2 ORDER BY 1, 2",
        )
        .fetch_all(&pool)
        .await
        .unwrap();
        if steps == [("finished".to_string(), None, ORGANIZATIONS as i64)] {
            break;
        }
        if tokio::time::Instant::now() > deadline {
            let tail = |log: String| log.lines().rev().take(15).collect::<Vec<_>>().join("\n");
            panic!(
                "not every rotation finished: {steps:?}\nlast lines of the first daemon's log:\n{}",
                tail(daemons[0].log())
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // What monitoring sees: rotations by outcome, their duration, each organization's next
    // rotation (a third of the new 180-day secret's life from now: in about 120 days).
    let mut finished_counted = 0.0;
    for daemon in &daemons {
        let (status, metrics) = daemon.get("/metrics").await.unwrap();
        assert_eq!(status, 200);
        assert_promtool_clean(&metrics);
        let value = |prefix: &str| {
            metrics
                .lines()
                .find(|line| line.starts_with(prefix))
                .and_then(|line| line.rsplit(' ').next())
                .and_then(|v| v.parse::<f64>().ok())
        };
        finished_counted += value("kodo_access_rotations_total{outcome=\"succeeded\"}").unwrap();
        assert!(metrics.contains("kodo_access_rotation_duration_seconds_bucket"));
        let due =
            value("kodo_access_secret_rotation_due_timestamp_seconds{organization=\"org-0000\"}")
                .expect("next rotation time");
        let days = (due - chrono::Utc::now().timestamp() as f64) / 86400.0;
        assert!(
            (119.0..=120.1).contains(&days),
            "next rotation in {days} days"
        );
    }
    assert_eq!(
        finished_counted, ORGANIZATIONS as f64,
        "each counted once, by whichever daemon"
    );
    let mut logs = Vec::new();
    for daemon in daemons {
        let (code, log) = daemon.terminate().await;
        assert_eq!(code, 0, "{log}");
        logs.push(log);
    }

    let rotations: i64 = sqlx::query_scalar("SELECT count(*) FROM rotations")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(
        rotations, ORGANIZATIONS as i64,
        "one rotation per organization"
    );
    // Exactly one addPassword per app, and each app holds just its new secret.
    let counters = sim.counters().await;
    let state = sim.state().await;
    for i in 0..ORGANIZATIONS {
        assert_eq!(
            counters["add_password"][app(i).to_string()].as_u64(),
            Some(1),
            "org-{i:04}: addPassword calls"
        );
        let tenant_state = state["tenants"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["id"] == tenant(i).to_string())
            .unwrap();
        let secrets = tenant_state["apps"][0]["secrets"].as_array().unwrap();
        assert_eq!(secrets.len(), 1, "org-{i:04}: {secrets:?}");
        assert_ne!(secrets[0]["key_id"], key(i).to_string(), "org-{i:04}");
    }
    // Each change happened once, whichever daemon made it.
    let changes: Vec<(String, i64)> = sqlx::query_as(
        "SELECT action, count(*) FROM audit_log WHERE actor = 'rotation' AND action LIKE 'credential.%' GROUP BY action ORDER BY action",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let n = ORGANIZATIONS as i64;
    assert_eq!(
        changes,
        [
            ("credential.activated".to_string(), n),
            ("credential.added".to_string(), n),
            ("credential.delivered".to_string(), n),
            ("credential.removed".to_string(), n),
            ("credential.removing".to_string(), n),
            ("credential.verified".to_string(), n),
        ]
    );
    // The work was shared: more than one daemon advanced rotations.
    let working = logs
        .iter()
        .filter(|log| log.contains("rotation advanced"))
        .count();
    assert!(working >= 2, "only {working} daemon(s) rotated anything");
    sim.running.stop().await;
}
