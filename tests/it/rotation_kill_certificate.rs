//! Kill -9 at every step of a certificate's rotation, as `rotation_kill` does for secrets.
//! The certificate is made and stored before Microsoft is asked, so a kill anywhere —
//! between addKey's answer and its record included — leaves no certificate nobody can
//! use: the restarted daemon finds it on the app by thumbprint, and addKey is called
//! exactly once.

use std::time::Duration;

use sqlx::PgPool;

use crate::certificate_support::{certificate_only_contoso, pair, rotation_config};
use crate::daemon_support::Daemon;
use crate::sim_support::{APP, Sim, TENANT, default_scenario};
use crate::support::*;

async fn kill_at(failpoint: &str, expected_step: &str, pool: PgPool) {
    let sim = Sim::start(&default_scenario()).await;
    sim.put(
        &format!("/_sim/tenants/{TENANT}/faults"),
        serde_json::json!({"propagation_delay_secs": 1}),
    )
    .await;
    let backup_dir = tempfile::tempdir().unwrap();
    let extra = rotation_config(
        backup_dir.path(),
        "1s",
        "verify_timeout = \"10s\"\npickup_interval = \"1s\"\n",
    );
    let env = TestEnv::with_extra(&pool, &crate::checks::config(&sim, &extra));
    // Issued 60 days ago with ten left: due (less than the 30-day lead time of a 70-day life).
    let (pem, key) = pair(60, 10);
    let old = certificate_only_contoso(&sim, &env, (&pem, &key)).await;
    env.exec(&["check", "contoso"]).await; // learns the certificate's keyId

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
    let killed_log = daemon.log();
    let killed_at: String =
        sqlx::query_scalar("SELECT step FROM rotations ORDER BY created_at DESC LIMIT 1")
            .fetch_optional(&pool)
            .await
            .unwrap()
            .unwrap_or_else(|| "none".into());
    assert_eq!(
        killed_at, expected_step,
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
    assert_eq!(rotations, 1, "{failpoint}: one rotation, resumed");
    // The app holds exactly one certificate: the current one, not the replaced one.
    let (kind, thumbprint): (String, String) =
        sqlx::query_as("SELECT kind, thumbprint FROM credentials WHERE status = 'current'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(kind, "certificate");
    let state = sim.state().await;
    let certificates = state["tenants"][0]["apps"][0]["certificates"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(certificates.len(), 1, "{failpoint}: {certificates:?}");
    assert_eq!(certificates[0]["thumbprint"], thumbprint.as_str());
    assert_ne!(certificates[0]["thumbprint"], old["thumbprint"]);
    let counters = sim.counters().await;
    assert_eq!(
        counters["add_key"][APP].as_u64(),
        Some(1),
        "{failpoint}: addKey once, whatever the kill"
    );
    assert_eq!(counters["remove_key"][APP].as_u64(), Some(1));
    // The backup server's copy is that certificate with its key, and it gets a token.
    let delivered: serde_json::Value =
        serde_json::from_slice(&std::fs::read(backup_dir.path().join("contoso.json")).unwrap())
            .unwrap();
    assert_eq!(delivered["thumbprint"], thumbprint.as_str());
    let received = kodo_access::microsoft::ClientCertificate::new(
        delivered["certificate"].as_str().unwrap().as_bytes(),
        delivered["private_key"].as_str().unwrap().as_bytes(),
    )
    .unwrap();
    let client = crate::sim_support::client(kodo_access::microsoft::RetryPolicy::NONE);
    client
        .token(
            &sim.endpoints(TENANT, APP),
            &kodo_access::microsoft::Credential::Certificate(std::sync::Arc::new(received)),
            kodo_access::microsoft::Resource::Graph,
        )
        .await
        .expect("the backup server's certificate gets a token");
    let check = env.exec(&["check", "contoso", "--output", "json"]).await;
    let results: Vec<serde_json::Value> = serde_json::from_str(&check.stdout).unwrap();
    assert_eq!(results[0]["state"], "healthy", "{check:?}");
    // The private key is nowhere but in the backup server's file.
    let private_key = delivered["private_key"].as_str().unwrap();
    let body = private_key.lines().nth(1).unwrap();
    assert!(!log.contains(body) && !killed_log.contains(body));
    let dump = crate::secrets::pg_dump(&env);
    // pg_dump prints bytea as hex: look for the key's text both ways.
    let hex: String = body.bytes().map(|b| format!("{b:02x}")).collect();
    assert!(
        !dump.contains(body) && !dump.contains(&hex),
        "the database holds the private key in plain text"
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
        fn every_rotation_failpoint_has_a_certificate_kill_test() {
            let tested = [$($failpoint),*];
            assert_eq!(tested.as_slice(), kodo_access::failpoint::ROTATION);
        }
    };
}

kill_tests! {
    killed_before_the_intent_is_recorded => "rotation-before-intent" at "none",
    killed_after_the_intent_is_recorded => "rotation-after-intent" at "intent",
    killed_with_the_certificate_stored_before_add_key => "rotation-before-added" at "intent",
    killed_after_add_key_before_recording_it => "rotation-after-added" at "intent",
    killed_before_verifying => "rotation-before-verified" at "added",
    killed_after_verifying_before_recording_it => "rotation-after-verified" at "added",
    killed_before_delivering => "rotation-before-delivered" at "verified",
    killed_after_delivering_before_recording_it => "rotation-after-delivered" at "verified",
    killed_before_activating => "rotation-before-activated" at "delivered",
    killed_after_activating => "rotation-after-activated" at "activated",
    killed_before_remove_key => "rotation-before-removed" at "activated",
    killed_after_remove_key_before_recording_it => "rotation-after-removed" at "activated",
}
