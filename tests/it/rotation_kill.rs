//! Kill -9 at every step of a rotation (issue 5's proof): for each step, the daemon runs
//! with a failpoint armed right before or right after it, is killed with SIGKILL when it
//! gets there, and is started again. Each test then asserts what matters to the backup:
//! the rotation finished once, the organization's current secret is the one on the app and
//! works, the backup server's copy works, and no credential of kodo-access is left behind.

use std::time::Duration;

use secrecy::SecretString;
use sqlx::PgPool;

use crate::daemon_support::Daemon;
use crate::sim_support::{APP, SECRET, Sim, TENANT, default_scenario, register_contoso};
use crate::support::*;

/// `expected_step`: the journal's step when the kill falls there ("none": no rotation yet).
async fn kill_at(failpoint: &str, expected_step: &str, pool: PgPool) {
    assert!(
        kodo_access::failpoint::ROTATION.contains(&failpoint),
        "{failpoint} is not a rotation failpoint"
    );
    // Due: the secret expires in 5 days. Microsoft takes a second to accept a new secret.
    let scenario = default_scenario().replace("expires_in_days = 200", "expires_in_days = 5");
    let sim = Sim::start(&scenario).await;
    sim.put(
        &format!("/_sim/tenants/{TENANT}/faults"),
        serde_json::json!({"propagation_delay_secs": 1}),
    )
    .await;
    let backup_dir = tempfile::tempdir().unwrap();
    let extra = format!(
        "[rotation]\ngrace = \"1s\"\nverify_timeout = \"10s\"\npickup_interval = \"1s\"\n[[rotation.file]]\ndirectory = \"{}\"\nmode = \"0600\"\n",
        backup_dir.path().display()
    );
    let env = TestEnv::with_extra(&pool, &crate::checks::config(&sim, &extra));
    register_contoso(&env).await;
    env.exec(&["check", "contoso"]).await; // learns the expiry

    let mut daemon = Daemon::start(&env, &[("FAILPOINTS", &format!("{failpoint}=return"))]);
    let reached = format!("failpoint {failpoint} reached");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !daemon.log().contains(&reached) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{failpoint} never reached; the daemon said:\n{}",
            daemon.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    daemon.child.kill().await.unwrap(); // SIGKILL
    let killed_at: (String, i64) = sqlx::query_as(
        "SELECT step, (SELECT count(*) FROM rotations) FROM rotations ORDER BY created_at DESC LIMIT 1",
    )
    .fetch_optional(&pool)
    .await
    .unwrap()
    .unwrap_or(("none".into(), 0));

    assert_eq!(
        killed_at.0, expected_step,
        "{failpoint}: the kill fell where it should"
    );
    let daemon = Daemon::start(&env, &[]);
    eventually(
        Duration::from_secs(60),
        "the rotation to finish",
        || async {
            let finished: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM rotations WHERE step = 'finished' AND outcome = 'succeeded'",
            )
            .fetch_one(&pool)
            .await
            .unwrap();
            finished == 1
        },
    )
    .await;
    let (_, log) = daemon.terminate().await;

    let rotations: i64 = sqlx::query_scalar("SELECT count(*) FROM rotations")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(
        rotations, 1,
        "killed at {killed_at:?}; one rotation, resumed"
    );
    // The app holds exactly one secret: the current one, created by the rotation.
    let (current_key, rotation_id): (Option<uuid::Uuid>, Option<uuid::Uuid>) =
        sqlx::query_as("SELECT key_id, rotation_id FROM credentials WHERE status = 'current'")
            .fetch_one(&pool)
            .await
            .unwrap();
    let state = sim.state().await;
    let secrets = state["tenants"][0]["apps"][0]["secrets"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(
        secrets.len(),
        1,
        "{failpoint}: no orphan and no old secret left: {secrets:?}"
    );
    assert_eq!(
        secrets[0]["key_id"].as_str().map(|k| k.parse().unwrap()),
        current_key
    );
    assert_eq!(
        secrets[0]["display_name"],
        format!("kodo-access rotation {}", rotation_id.unwrap())
    );
    // The backup server's copy is that secret, and it works.
    let delivered: serde_json::Value =
        serde_json::from_slice(&std::fs::read(backup_dir.path().join("contoso.json")).unwrap())
            .unwrap();
    assert_eq!(
        delivered["secret_id"].as_str().map(|k| k.parse().unwrap()),
        current_key
    );
    let client = crate::sim_support::client(kodo_access::microsoft::RetryPolicy::NONE);
    let from_file = SecretString::from(delivered["client_secret"].as_str().unwrap().to_string());
    client
        .token(
            &sim.endpoints(TENANT, APP),
            &from_file,
            kodo_access::microsoft::Resource::Graph,
        )
        .await
        .expect("the backup server's secret gets a token");
    // The secret kodo-access holds works: a check with it is healthy.
    let check = env.exec(&["check", "contoso", "--output", "json"]).await;
    let results: Vec<serde_json::Value> = serde_json::from_str(&check.stdout).unwrap();
    assert_eq!(results[0]["state"], "healthy", "{check:?}");
    // An orphan only where the kill fell between Microsoft's answer and the commit.
    let counters = sim.counters().await;
    let added = counters["add_password"][APP].as_u64().unwrap();
    let expected_added = if failpoint == "rotation-after-added" {
        2
    } else {
        1
    };
    assert_eq!(added, expected_added, "{failpoint}: addPassword calls");
    let orphans: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM audit_log WHERE action = 'credential.orphan_removed'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(orphans as u64, expected_added - 1);
    // Nothing secret in the log, the audit log or the files but the backup server's.
    let new_secret = delivered["client_secret"].as_str().unwrap();
    assert!(!log.contains(new_secret) && !log.contains(SECRET));
    let audit: String =
        sqlx::query_scalar("SELECT COALESCE(string_agg(details::text, ' '), '') FROM audit_log")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert!(!audit.contains(new_secret));
    let dump = crate::secrets::pg_dump(&env);
    let hex: String = new_secret.bytes().map(|b| format!("{b:02x}")).collect();
    assert!(
        !dump.contains(&new_secret[3..]) && !dump.contains(&hex),
        "the database holds the new secret in plain text"
    );
    sim.running.stop().await;
}

macro_rules! kill_tests {
    ($($name:ident => $failpoint:literal at $step:literal,)*) => {
        $(
            #[sqlx::test]
            async fn $name(pool: PgPool) {
                kill_at($failpoint, $step, pool).await;
            }
        )*

        #[test]
        fn every_rotation_failpoint_has_a_kill_test() {
            let tested = [$($failpoint),*];
            assert_eq!(tested.as_slice(), kodo_access::failpoint::ROTATION);
        }
    };
}

kill_tests! {
    killed_before_the_intent_is_recorded => "rotation-before-intent" at "none",
    killed_after_the_intent_is_recorded => "rotation-after-intent" at "intent",
    killed_before_add_password => "rotation-before-added" at "intent",
    killed_after_add_password_before_storing_the_secret => "rotation-after-added" at "intent",
    killed_before_verifying => "rotation-before-verified" at "added",
    killed_after_verifying_before_recording_it => "rotation-after-verified" at "added",
    killed_before_delivering => "rotation-before-delivered" at "verified",
    killed_after_delivering_before_recording_it => "rotation-after-delivered" at "verified",
    killed_before_activating => "rotation-before-activated" at "delivered",
    killed_after_activating => "rotation-after-activated" at "activated",
    killed_before_remove_password => "rotation-before-removed" at "activated",
    killed_after_remove_password_before_recording_it => "rotation-after-removed" at "activated",
}
