//! Microsoft's refusals of a rotation, each turned into its state and alert with what to
//! do (issue 5): 403 on addPassword, the app-management policy (lifetime: retried within
//! the limit; secrets not allowed), a backup server that does not take the new secret;
//! and a human's credential on the app that rotation never touches.

use sqlx::PgPool;

use crate::sim_support::{APP, SECRET, Sim, TENANT, default_scenario, register_contoso};
use crate::support::*;

/// The contoso scenario with its secret due (5 days left), a file deliverer, no grace.
async fn due_contoso(pool: &PgPool, extra_scenario: &str, deliverer: &str) -> (Sim, TestEnv) {
    let scenario =
        default_scenario().replace("expires_in_days = 200", "expires_in_days = 5") + extra_scenario;
    let sim = Sim::start(&scenario).await;
    let extra = format!("[rotation]\ngrace = \"0s\"\nverify_timeout = \"10s\"\n{deliverer}");
    let env = TestEnv::with_extra(pool, &crate::checks::config(&sim, &extra));
    register_contoso(&env).await;
    env.exec(&["check", "contoso"]).await; // learns the expiry
    (sim, env)
}

fn file_deliverer(directory: &std::path::Path) -> String {
    format!(
        "[[rotation.file]]\ndirectory = \"{}\"\nmode = \"0600\"\n",
        directory.display()
    )
}

async fn firing(pool: &PgPool) -> Vec<(String, String, serde_json::Value)> {
    sqlx::query_as(
        // Without the EWS retirement advisory, which every Exchange-consented app gets now.
        "SELECT kind, severity, annotations FROM alerts WHERE status = 'firing' AND kind <> 'ews_retirement' ORDER BY kind",
    )
    .fetch_all(pool)
    .await
    .unwrap()
}

fn kinds(alerts: &[(String, String, serde_json::Value)]) -> Vec<&str> {
    alerts.iter().map(|(kind, _, _)| kind.as_str()).collect()
}

fn app_secrets(state: &serde_json::Value) -> Vec<serde_json::Value> {
    state["tenants"][0]["apps"][0]["secrets"]
        .as_array()
        .unwrap()
        .clone()
}

#[sqlx::test]
async fn a_403_says_how_to_fix_it_and_rotation_resumes_once_fixed(pool: PgPool) {
    let backup = tempfile::tempdir().unwrap();
    let (sim, env) = due_contoso(&pool, "", &file_deliverer(backup.path())).await;
    sim.put(
        &format!("/_sim/tenants/{TENANT}/apps/{APP}/ownership"),
        serde_json::json!({"owns_itself": false}),
    )
    .await;
    let run = env.exec(&["job", "run", "rotations"]).await;
    assert!(run.stdout.contains("1 failed"), "{run:?}");
    let history = env.exec(&["rotations", "contoso"]).await;
    assert!(
        history
            .success()
            .stdout
            .contains("not_authorized: the app has Application.ReadWrite.OwnedBy, but its service principal is not an owner"),
        "{history:?}"
    );
    // The check that the failure made due turns it into alerts.
    env.exec(&["check", "contoso"]).await;
    let alerts = firing(&pool).await;
    assert_eq!(
        kinds(&alerts),
        ["rotation_not_authorized", "rotation_overdue"],
        "no secret_expiring while kodo-access rotates: {alerts:?}"
    );
    let (_, severity, annotations) = &alerts[0];
    assert_eq!(severity, "warning");
    let action = annotations["action"].as_str().unwrap();
    assert!(
        action.contains("Application.ReadWrite.OwnedBy") && action.contains("/owners/$ref"),
        "{action}"
    );
    assert!(annotations["admin_consent_url"].is_string());
    let (_, severity, annotations) = &alerts[1];
    assert_eq!(severity, "critical");
    let summary = annotations["summary"].as_str().unwrap();
    assert!(
        summary.contains("expires in 4.9 days") || summary.contains("expires in 5.0 days"),
        "{summary}"
    );
    assert!(summary.contains("not_authorized"), "{summary}");
    assert_eq!(app_secrets(&sim.state().await).len(), 1, "nothing added");
    let show = env.exec(&["org", "show", "contoso"]).await;
    assert!(
        show.success()
            .stdout
            .contains("rotation:         on, lead time 30days")
            && show.stdout.contains(
                "at step intent; 1 failed attempt(s), not_authorized: the app has Application.ReadWrite.OwnedBy, but its service principal is not an owner of its own application object: graph addPassword failed"
            ),
        "{show:?}"
    );

    // Fixed by the admin: an on-demand rotation goes through at once (no backoff wait),
    // and the next check resolves both alerts.
    sim.put(
        &format!("/_sim/tenants/{TENANT}/apps/{APP}/ownership"),
        serde_json::json!({"owns_itself": true}),
    )
    .await;
    let rotated = env.exec(&["rotate", "contoso"]).await;
    assert!(rotated.success().stdout.contains("finished"), "{rotated:?}");
    env.exec(&["check", "contoso"]).await.success();
    assert_eq!(kinds(&firing(&pool).await), Vec::<&str>::new());
    let resolved: Vec<String> =
        sqlx::query_scalar("SELECT kind FROM alerts WHERE status = 'resolved' ORDER BY kind")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(resolved, ["rotation_not_authorized", "rotation_overdue"]);
    // Only the rotation alerts came and went: no secret_expiring at any point.
    sim.running.stop().await;
}

#[sqlx::test]
async fn a_policy_limiting_the_lifetime_is_met_within_its_limit_and_remembered(pool: PgPool) {
    let backup = tempfile::tempdir().unwrap();
    let (sim, env) = due_contoso(&pool, "", &file_deliverer(backup.path())).await;
    sim.put(
        &format!("/_sim/tenants/{TENANT}/policy"),
        serde_json::json!({"max_lifetime_days": 100}),
    )
    .await;
    let attempts = |counters: &serde_json::Value| {
        counters["recent"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|request| {
                request["endpoint"]
                    .as_str()
                    .unwrap()
                    .contains("addPassword")
            })
            .map(|request| request["status"].as_u64().unwrap())
            .collect::<Vec<_>>()
    };
    env.exec(&["rotate", "contoso"]).await.success();
    // 180 days refused (400), then 90 accepted.
    assert_eq!(attempts(&sim.counters().await), [400, 200]);
    let (end, limit): (chrono::DateTime<chrono::Utc>, Option<i32>) = sqlx::query_as(
        "SELECT c.end_at, o.secret_lifetime_limit_days FROM credentials c JOIN organizations o ON o.id = c.organization_id WHERE c.status = 'current'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    let days = (end - chrono::Utc::now()).num_hours() as f64 / 24.0;
    assert!((89.9..=90.0).contains(&days), "{days} days");
    assert_eq!(limit, Some(90));
    let audit: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM audit_log WHERE action = 'rotation.lifetime_limited' AND details->>'accepted_days' = '90'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(audit, 1);
    // The next rotation asks for 90 days straight away.
    env.exec(&["rotate", "contoso"]).await.success();
    assert_eq!(attempts(&sim.counters().await), [400, 200, 200]);
    // Nothing to alert about: the organization is healthy.
    env.exec(&["check", "contoso"]).await.success();
    assert_eq!(kinds(&firing(&pool).await), Vec::<&str>::new());
    sim.running.stop().await;
}

#[sqlx::test]
async fn a_tenant_that_allows_no_secrets_is_told_it_needs_a_certificate(pool: PgPool) {
    let backup = tempfile::tempdir().unwrap();
    let (sim, env) = due_contoso(&pool, "", &file_deliverer(backup.path())).await;
    sim.put(
        &format!("/_sim/tenants/{TENANT}/policy"),
        serde_json::json!({"secrets_blocked": true}),
    )
    .await;
    let refused = env.exec(&["rotate", "contoso"]).await;
    assert_eq!(refused.code, 1, "{refused:?}");
    assert!(
        refused.stderr.contains("secrets_not_allowed"),
        "{refused:?}"
    );
    env.exec(&["check", "contoso"]).await;
    let alerts = firing(&pool).await;
    assert_eq!(
        kinds(&alerts),
        ["rotation_overdue", "rotation_secrets_not_allowed"]
    );
    assert!(
        alerts[1].2["action"]
            .as_str()
            .unwrap()
            .contains("certificate")
    );
    // The old secret is still the one in use, and on the app.
    let state = sim.state().await;
    assert_eq!(app_secrets(&state).len(), 1);
    assert!(!backup.path().join("contoso.json").exists());
    sim.running.stop().await;
}

#[sqlx::test]
async fn a_backup_server_that_refuses_the_secret_keeps_the_old_one_working(pool: PgPool) {
    // The backup server's hook fails until a flag file appears.
    let hooks = tempfile::tempdir().unwrap();
    let hook = hooks.path().join("deploy-hook");
    let flag = hooks.path().join("ready");
    write_file(
        &hook,
        &format!(
            "#!/bin/sh\ncat > /dev/null\n[ -e {} ] || {{ echo 'backup server is down' >&2; exit 3; }}\n",
            flag.display()
        ),
        0o700,
    );
    let deliverer = format!(
        "[[rotation.command]]\nprogram = \"{}\"\ntimeout = \"5s\"\n",
        hook.display()
    );
    let (sim, env) = due_contoso(&pool, "", &deliverer).await;
    for _ in 0..2 {
        let failed = env.exec(&["rotate", "contoso"]).await;
        assert!(failed.stderr.contains("delivery_failed"), "{failed:?}");
    }
    env.exec(&["check", "contoso"]).await;
    let alerts = firing(&pool).await;
    assert_eq!(kinds(&alerts), ["rotation_failing", "rotation_overdue"]);
    assert!(
        alerts[0].2["summary"]
            .as_str()
            .unwrap()
            .contains("failed 2 times"),
        "{alerts:?}"
    );
    // The rotation waits at `verified`: one new secret on the app (added once), the old one
    // still current and still working.
    let (step, current_key): (String, Option<uuid::Uuid>) = sqlx::query_as(
        "SELECT r.step, c.key_id FROM rotations r JOIN credentials c ON c.id = r.old_credential_id AND c.status = 'current'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(step, "verified");
    assert_eq!(sim.counters().await["add_password"][APP].as_u64(), Some(1));
    let secrets = app_secrets(&sim.state().await);
    assert_eq!(secrets.len(), 2);
    assert!(
        secrets
            .iter()
            .any(|s| s["key_id"].as_str().map(|k| k.parse().unwrap()) == current_key)
    );
    // And it still works.
    let client = crate::sim_support::client(kodo_access::microsoft::RetryPolicy::NONE);
    client
        .token(
            &sim.endpoints(TENANT, APP),
            &secrecy::SecretString::from(SECRET.to_string()),
            kodo_access::microsoft::Resource::Graph,
        )
        .await
        .expect("the old secret still gets a token");

    std::fs::write(&flag, "").unwrap();
    env.exec(&["rotate", "contoso"]).await.success();
    env.exec(&["check", "contoso"]).await.success();
    assert_eq!(kinds(&firing(&pool).await), Vec::<&str>::new());
    assert_eq!(
        sim.counters().await["add_password"][APP].as_u64(),
        Some(1),
        "the secret added before is the one delivered"
    );
    sim.running.stop().await;
}

#[sqlx::test]
async fn a_credential_kodo_access_does_not_own_is_never_removed(pool: PgPool) {
    let backup = tempfile::tempdir().unwrap();
    let break_glass = "[[tenants.apps.secrets]]\nvalue = \"Brk8Q~break-glass-for-humans\"\ndisplay_name = \"break glass\"\nexpires_in_days = 300\n";
    let (sim, env) = due_contoso(&pool, break_glass, &file_deliverer(backup.path())).await;
    env.exec(&["rotate", "contoso"]).await.success();
    let secrets = app_secrets(&sim.state().await);
    let names: Vec<&str> = secrets
        .iter()
        .map(|s| s["display_name"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
    assert!(names.contains(&"break glass"), "{names:?}");
    assert!(
        !names.contains(&"by hand"),
        "the replaced secret is gone: {names:?}"
    );
    assert_eq!(
        sim.counters().await["remove_password"][APP].as_u64(),
        Some(1),
        "one removal: the replaced secret"
    );
    let break_glass_key = |secrets: &[serde_json::Value]| {
        secrets
            .iter()
            .find(|s| s["display_name"] == "break glass")
            .map(|s| s["key_id"].clone())
    };
    let key_before = break_glass_key(&secrets);
    assert!(key_before.is_some());
    // The replaced secret no longer works; the backup server's new one does.
    let client = crate::sim_support::client(kodo_access::microsoft::RetryPolicy::NONE);
    let endpoints = sim.endpoints(TENANT, APP);
    let old = secrecy::SecretString::from(SECRET.to_string());
    assert!(
        client
            .token(&endpoints, &old, kodo_access::microsoft::Resource::Graph)
            .await
            .is_err()
    );
    let delivered: serde_json::Value =
        serde_json::from_slice(&std::fs::read(backup.path().join("contoso.json")).unwrap())
            .unwrap();
    let new = secrecy::SecretString::from(delivered["client_secret"].as_str().unwrap().to_string());
    client
        .token(&endpoints, &new, kodo_access::microsoft::Resource::Graph)
        .await
        .unwrap();
    // A second rotation leaves the human's secret alone as well.
    env.exec(&["rotate", "contoso"]).await.success();
    let secrets = app_secrets(&sim.state().await);
    assert_eq!(secrets.len(), 2, "{secrets:?}");
    assert_eq!(break_glass_key(&secrets), key_before);
    assert_eq!(
        sim.counters().await["remove_password"][APP].as_u64(),
        Some(2)
    );
    sim.running.stop().await;
}

#[sqlx::test]
async fn an_app_deleted_from_the_tenant_stops_rotation_and_the_check_says_why(pool: PgPool) {
    let backup = tempfile::tempdir().unwrap();
    let (sim, env) = due_contoso(&pool, "", &file_deliverer(backup.path())).await;
    sim.delete(&format!("/_sim/tenants/{TENANT}/apps/{APP}"))
        .await;
    let refused = env.exec(&["rotate", "contoso"]).await;
    assert_eq!(refused.code, 1, "{refused:?}");
    assert!(refused.stderr.contains("(access_lost)"), "{refused:?}");
    let check = env.exec(&["check", "contoso", "--output", "json"]).await;
    let results: Vec<serde_json::Value> = serde_json::from_str(&check.stdout).unwrap();
    assert_eq!(results[0]["state"], "app_missing", "{check:?}");
    assert!(kinds(&firing(&pool).await).contains(&"app_missing"));
    assert!(!backup.path().join("contoso.json").exists());
    sim.running.stop().await;
}

#[sqlx::test]
async fn an_organization_without_a_stored_secret_is_refused_and_nothing_is_journaled(pool: PgPool) {
    let sim = Sim::start(&default_scenario()).await;
    let env = TestEnv::with_extra(&pool, &crate::checks::config(&sim, ""));
    register_contoso(&env).await;
    // The schema allows an organization without a current secret (none is stored or the
    // stored one was set aside); the CLI never makes one, so the database does.
    sqlx::query("UPDATE credentials SET status = 'discarded'")
        .execute(&pool)
        .await
        .unwrap();
    env.exec(&["rotate", "contoso"])
        .await
        .fails_with(2, "contoso has no current secret to rotate");
    let rotations: i64 = sqlx::query_scalar("SELECT count(*) FROM rotations")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(rotations, 0, "no rotation that could never finish");
    sim.running.stop().await;
}

#[sqlx::test]
async fn an_organization_without_a_sharepoint_host_rotates_under_the_default_resources(
    pool: PgPool,
) {
    // Checked on graph, exchange and sharepoint (the defaults) without a SharePoint host:
    // the check skips SharePoint, and so does the verification of a new secret.
    let backup = tempfile::tempdir().unwrap();
    let (sim, env) = due_contoso(&pool, "", &file_deliverer(backup.path())).await;
    env.exec(&[
        "org",
        "set",
        "contoso",
        "--resources",
        "graph,exchange,sharepoint",
    ])
    .await
    .success();
    let started = std::time::Instant::now();
    let rotated = env.exec(&["rotate", "contoso"]).await;
    assert!(rotated.success().stdout.contains("finished"), "{rotated:?}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(8),
        "verified at once, not after the 10 s limit: {:?}",
        started.elapsed()
    );
    assert_eq!(app_secrets(&sim.state().await).len(), 1);
    sim.running.stop().await;
}

#[sqlx::test]
async fn consent_gone_during_rotation_is_access_lost_and_clears_when_it_is_back(pool: PgPool) {
    let backup = tempfile::tempdir().unwrap();
    let (sim, env) = due_contoso(&pool, "", &file_deliverer(backup.path())).await;
    let consent = |action: &'static str| {
        let sim = &sim;
        async move {
            sim.post(
                &format!("/_sim/tenants/{TENANT}/apps/{APP}/consent/{action}"),
                serde_json::json!({}),
            )
            .await;
        }
    };
    consent("revoke").await;
    let run = env.exec(&["job", "run", "rotations"]).await;
    assert!(run.stdout.contains("1 failed"), "{run:?}");
    let (reason, error): (String, String) =
        sqlx::query_as("SELECT failure_reason, last_error FROM rotations")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(reason, "access_lost", "{error}");
    assert!(error.contains("admin consent appears revoked"), "{error}");
    env.exec(&["check", "contoso"]).await;
    let alerts = firing(&pool).await;
    assert!(
        kinds(&alerts).contains(&"consent_revoked")
            && !kinds(&alerts).contains(&"rotation_not_authorized"),
        "the check names the cause, not a missing OwnedBy grant: {alerts:?}"
    );

    // Consent back: the next check sees it and the rotation tries again at once instead of
    // in an hour; once it has, nothing of the failure is left.
    consent("grant").await;
    env.exec(&["check", "contoso"]).await;
    let waiting: bool = sqlx::query_scalar(
        "SELECT next_attempt_at <= now() FROM rotations WHERE finished_at IS NULL",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(waiting, "the rotation is due again");
    let run = env.exec(&["job", "run", "rotations"]).await;
    assert!(run.stdout.contains("0 failed"), "{run:?}");
    env.exec(&["check", "contoso"]).await;
    assert_eq!(kinds(&firing(&pool).await), Vec::<&str>::new());
    sim.running.stop().await;
}
