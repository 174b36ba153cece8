//! Three daemons, one database (issue 5's "several daemons"): with hundreds of
//! organizations due at once, every secret is replaced exactly once, whichever daemon
//! does it, and each app ends with exactly its one new secret.

use std::time::Duration;

use sqlx::PgPool;

use crate::fleet_support::Fleet;
use crate::support::*;

const ORGANIZATIONS: usize = 300;

#[sqlx::test]
async fn three_daemons_rotate_hundreds_of_organizations_exactly_once(pool: PgPool) {
    // Every secret expires in 5 days (due); Microsoft takes 2 s to accept a new one, so
    // the daemons' passes overlap while rotations wait.
    let fleet = Fleet::start(
        &pool,
        ORGANIZATIONS,
        "propagation_delay_secs = 2",
        "grace = \"1s\"\nverify_timeout = \"60s\"",
        None,
    )
    .await;
    let daemons: Vec<_> = (0..3).map(|_| fleet.daemon(&[])).collect();
    let watched: Vec<_> = daemons.iter().collect();
    fleet
        .wait_all_finished(&pool, Duration::from_secs(180), &watched)
        .await;
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

    // Exactly one addPassword per app, and each app holds just its new secret.
    fleet.assert_one_add_password_each().await;
    fleet.assert_one_working_secret_each(&pool).await;
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
    fleet.sim.running.stop().await;
}
