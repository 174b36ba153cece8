//! Rotation under the ordinary faults of a first month in production (issue 9): answers
//! lost after Microsoft acted, daemons frozen and killed mid-flight, the database away
//! right after addPassword, an organization without a SharePoint host. After each, every
//! organization is rotated exactly once and every app holds exactly one secret: the one
//! kodo-access holds and the backup server has.

use std::time::Duration;

use sqlx::PgPool;

use crate::daemon_support::Proxy;
use crate::fleet_support::{Fleet, app};
use crate::support::*;

#[sqlx::test]
async fn a_quarter_of_lost_answers_leaves_one_working_secret_and_nothing_else(pool: PgPool) {
    // A quarter of addPassword and removePassword answers are lost after Microsoft acted:
    // half of them cut mid-answer, half held past the client's timeout.
    const ORGANIZATIONS: usize = 40;
    let fleet = Fleet::start(
        &pool,
        ORGANIZATIONS,
        "propagation_delay_secs = 1\nlost_answer_rate = 0.25",
        "grace = \"1s\"\nverify_timeout = \"30s\"",
        None,
    )
    .await;
    let daemon = fleet.daemon(&[("KODO_ACCESS__MICROSOFT__REQUEST_TIMEOUT", "4s")]);
    // A few seconds in, lost answers stop arriving at all (held past the client's 4 s
    // timeout) instead of being cut.
    tokio::time::sleep(Duration::from_secs(3)).await;
    fleet
        .sim
        .put(
            "/_sim/faults",
            serde_json::json!({"propagation_delay_secs": 1, "lost_answer_rate": 0.25, "lost_answer_delay_ms": 6_000}),
        )
        .await;
    fleet
        .wait_all_finished(&pool, Duration::from_secs(240), &[&daemon])
        .await;
    let (code, log) = daemon.terminate().await;
    assert_eq!(code, 0, "{log}");
    let lost = fleet.sim.requests("graph addPassword answer lost").await
        + fleet.sim.requests("graph removePassword answer lost").await;
    assert!(
        lost >= 5,
        "only {lost} answers were lost: the fault did not bite"
    );
    fleet.assert_one_working_secret_each(&pool).await;
    // What a lost addPassword answer created was removed, and said so.
    let counters = fleet.sim.counters().await;
    let added: u64 = (0..ORGANIZATIONS)
        .map(|i| {
            counters["add_password"][app(i).to_string()]
                .as_u64()
                .unwrap()
        })
        .sum();
    let leftovers: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM audit_log WHERE action = 'credential.orphan_removed'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(
        added - ORGANIZATIONS as u64,
        leftovers as u64,
        "every extra secret removed and audited"
    );
    // Lost answers are looked after within the attempt; only when they keep coming does
    // an attempt end, as Microsoft being unavailable (retried in a minute, not an hour).
    for line in log.lines().filter(|line| line.contains("rotation failed")) {
        assert!(line.contains("microsoft_unavailable"), "{line}");
    }
    // And the checks see nothing kodo-access did not make.
    fleet.sim.put("/_sim/faults", serde_json::json!({})).await;
    let check = fleet
        .env
        .exec(&["check", "--all", "--output", "json"])
        .await;
    let results: Vec<serde_json::Value> = serde_json::from_str(&check.stdout).unwrap();
    assert_eq!(results.len(), ORGANIZATIONS);
    for result in &results {
        let kinds: Vec<&str> = result["findings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|finding| finding["kind"].as_str().unwrap())
            .collect();
        assert!(
            !kinds.contains(&"unknown_credential"),
            "{}: {kinds:?}",
            result["organization"]
        );
    }
    fleet.sim.running.stop().await;
}

#[sqlx::test]
async fn a_frozen_daemon_and_two_killed_ones_rotate_each_organization_once(pool: PgPool) {
    // Verification is claimed for 20 s (verify_timeout 15 s + 5 s); the frozen daemon
    // sleeps longer than that and than the grace, so the others verify, deliver, activate
    // and finish what it was verifying.
    const ORGANIZATIONS: usize = 200;
    let fleet = Fleet::start(
        &pool,
        ORGANIZATIONS,
        "propagation_delay_secs = 4",
        "grace = \"2s\"\nverify_timeout = \"15s\"",
        None,
    )
    .await;
    let frozen = fleet.daemon(&[]);
    let mut others: Vec<_> = (0..2).map(|_| fleet.daemon(&[])).collect();
    eventually(
        Duration::from_secs(60),
        "the first daemon to be verifying",
        || async { frozen.log().contains("new secret not accepted yet") },
    )
    .await;
    frozen.signal("STOP");
    // The rotation it was verifying when it froze, which others must finish without it.
    let verifying: uuid::Uuid = frozen
        .log()
        .lines()
        .find(|line| line.contains("new secret not accepted yet"))
        .and_then(|line| line.split("rotation=").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|id| id.parse().ok())
        .expect("the rotation id in the verifier's log line");
    tokio::time::sleep(Duration::from_secs(2)).await;
    for mut daemon in others.drain(..) {
        daemon.child.kill().await.unwrap(); // SIGKILL, mid-flight
    }
    let others: Vec<_> = (0..2).map(|_| fleet.daemon(&[])).collect();
    tokio::time::sleep(Duration::from_secs(33)).await;
    frozen.signal("CONT");
    let watched = [&frozen, &others[0], &others[1]];
    fleet
        .wait_all_finished(&pool, Duration::from_secs(180), &watched)
        .await;
    // Time for the woken daemon to do whatever it still would.
    tokio::time::sleep(Duration::from_secs(10)).await;
    fleet
        .wait_all_finished(&pool, Duration::from_secs(1), &watched)
        .await;
    let mut logs = Vec::new();
    for daemon in [frozen].into_iter().chain(others) {
        let (code, log) = daemon.terminate().await;
        assert_eq!(code, 0, "{log}");
        logs.push(log);
    }
    // What it was verifying was finished by another daemon, once, and the woken verifier
    // stopped instead of going on (or starting a rotation of its own).
    let (outcome, credentials): (Option<String>, i64) = sqlx::query_as(
        "SELECT r.outcome, (SELECT count(*) FROM credentials c WHERE c.rotation_id = r.id)
         FROM rotations r WHERE r.id = $1",
    )
    .bind(verifying)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(
        (outcome.as_deref(), credentials),
        (Some("succeeded"), 1),
        "rotation {verifying}"
    );
    assert!(
        !logs[0].contains(&format!("rotation advanced rotation={verifying}")),
        "the woken verifier went on with a rotation others had finished: {}",
        logs[0]
    );
    fleet.assert_one_working_secret_each(&pool).await;
    // No pager rang: no critical alert was ever raised, resolved or not.
    let critical: Vec<(String, String)> = sqlx::query_as(
        "SELECT o.name, a.kind FROM alerts a JOIN organizations o ON o.id = a.organization_id WHERE a.severity = 'critical'",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let failures: Vec<&str> = logs
        .iter()
        .flat_map(|log| log.lines())
        .filter(|line| line.contains("rotation failed"))
        .collect();
    assert_eq!(
        critical,
        [],
        "critical alerts fired; rotation failures: {failures:#?}"
    );
    fleet.sim.running.stop().await;
}

#[sqlx::test]
async fn a_database_outage_right_after_add_password_loses_nothing(pool: PgPool) {
    // The daemon reaches PostgreSQL through a proxy the test cuts for 15 s right after
    // Microsoft created the first new secret (the daemon pauses there 3 s).
    const ORGANIZATIONS: usize = 40;
    let (proxy_port, upstream, proxied) = crate::daemon_support::proxied_database(&pool);
    let proxy = Proxy::start(proxy_port, upstream.clone()).await;
    let fleet = Fleet::start(
        &pool,
        ORGANIZATIONS,
        "propagation_delay_secs = 1",
        "grace = \"1s\"\nverify_timeout = \"30s\"",
        Some(proxied),
    )
    .await;
    let daemon = fleet.daemon(&[("FAILPOINTS", "rotation-after-added=1*return(3000)")]);
    eventually(
        Duration::from_secs(60),
        "Microsoft to create the first secret",
        || async {
            daemon
                .log()
                .contains("failpoint rotation-after-added reached")
        },
    )
    .await;
    proxy.cut().await;
    tokio::time::sleep(Duration::from_secs(15)).await;
    let _proxy = Proxy::start(proxy_port, upstream).await;
    fleet
        .wait_all_finished(&pool, Duration::from_secs(60), &[&daemon])
        .await;
    let (code, log) = daemon.terminate().await;
    assert_eq!(code, 0, "{log}");
    fleet.assert_one_working_secret_each(&pool).await;
    // The secret Microsoft created before the outage was kept, not thrown away and made
    // again; and nothing was recorded as a failure with its long backoff.
    fleet.assert_one_add_password_each().await;
    let failed: Vec<(String, i32)> = sqlx::query_as(
        "SELECT COALESCE(failure_reason, '-'), attempts FROM rotations WHERE attempts > 0",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(failed, [], "failures recorded for a database outage");
    assert!(
        log.contains("rotation interrupted by the database"),
        "the outage was met: {log}"
    );
    // Jobs held up by the outage say so once each, not on every one of its 15 ticks (a
    // slow run before the outage may have said so once more).
    let skipping: Vec<&str> = log
        .lines()
        .filter(|line| line.contains("previous run still going"))
        .collect();
    let mut per_job = std::collections::HashMap::new();
    for line in &skipping {
        *per_job
            .entry(line.split("job=").nth(1).unwrap_or(line))
            .or_insert(0) += 1;
    }
    assert!(
        per_job.values().all(|said| *said <= 2),
        "once per job and outage: {per_job:?}"
    );
    fleet.sim.running.stop().await;
}
