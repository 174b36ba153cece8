//! Health checks end to end: the real binary, the real PostgreSQL, the simulated cloud,
//! a real Alertmanager, and a webhook receiver that verifies signatures.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlx::PgPool;

use crate::alertmanager::Alertmanager;
use crate::sim_support::{APP, SECRET, Sim, TENANT, default_scenario};
use crate::support::*;

/// Configuration pointing a cloud named `sim` at the simulator, with short delays.
pub fn config(sim: &Sim, extra: &str) -> String {
    format!(
        "[clouds.sim]\nauthority = \"{base}\"\ngraph = \"{base}\"\nexchange = \"{base}\"\nsharepoint = \"{base}\"\nsharepoint_suffix = \"sharepoint.com\"\ngraph_resource = \"https://graph.microsoft.com\"\nexchange_resource = \"https://outlook.office365.com\"\n\n[checks]\nconfirm_delay = \"1s\"\npickup_interval = \"1s\"\nresources = [\"graph\", \"exchange\"]\n\n[microsoft]\nretry_attempts = 2\nretry_min_delay = \"50ms\"\nretry_max_delay = \"200ms\"\nretry_max_elapsed = \"3s\"\n\n{extra}",
        base = sim.running.base_url
    )
}

async fn firing_kinds(pool: &PgPool) -> Vec<String> {
    sqlx::query_scalar("SELECT kind FROM alerts WHERE status = 'firing' ORDER BY kind")
        .fetch_all(pool)
        .await
        .unwrap()
}

#[sqlx::test]
async fn a_healthy_organization_checks_healthy_and_learns_its_secret(pool: PgPool) {
    let sim = Sim::start(&default_scenario()).await;
    let env = TestEnv::with_extra(&pool, &config(&sim, ""));
    crate::sim_support::register_contoso(&env).await;
    let outcome = env.exec(&["check", "contoso", "--output", "json"]).await;
    let results: Vec<serde_json::Value> = serde_json::from_str(&outcome.success().stdout).unwrap();
    assert_eq!(results[0]["state"], "healthy", "{}", outcome.stdout);
    // The secret's keyId and expiry were learned from Graph (matched by hint).
    let (key_id, end): (Option<uuid::Uuid>, Option<chrono::DateTime<chrono::Utc>>) =
        sqlx::query_as("SELECT key_id, end_at FROM credentials WHERE status = 'current'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert!(key_id.is_some() && end.is_some());
    let checks: i64 = sqlx::query_scalar("SELECT count(*) FROM checks")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(checks, 1);
    // Six requests at most per check (3 tokens are asked only for checked resources).
    let requests = sim.counters().await["total"].as_u64().unwrap();
    assert!(requests <= 6, "{requests} requests for one check");
    let status = env.exec(&["status"]).await;
    assert!(status.success().stdout.contains("healthy"), "{status:?}");
    env.exec(&["check"])
        .await
        .fails_with(2, "name an organization to check, or pass --all");
    sim.running.stop().await;
}

#[sqlx::test]
async fn revoked_consent_reaches_alertmanager_and_resolves_when_restored(pool: PgPool) {
    let sim = Sim::start(&default_scenario()).await;
    let alertmanager = Alertmanager::start(None).await;
    let env = TestEnv::with_extra(
        &pool,
        &config(
            &sim,
            &format!(
                "[[alerts.alertmanager]]\nname = \"am\"\nurl = \"{}\"\n",
                alertmanager.url()
            ),
        ),
    );
    crate::sim_support::register_contoso(&env).await;
    env.exec(&["check", "contoso"]).await.success();

    sim.post(
        &format!("/_sim/tenants/{TENANT}/apps/{APP}/consent/revoke"),
        serde_json::json!({}),
    )
    .await;
    let outcome = env.exec(&["check", "contoso"]).await;
    outcome.fails_with(3, "1 organization(s) not healthy");
    assert!(
        outcome
            .stdout
            .contains("contoso: consent_revoked (was healthy)"),
        "{}",
        outcome.stdout
    );
    assert!(
        outcome
            .stdout
            .lines()
            .any(|l| l.starts_with("  alerts fired:") && l.contains("consent_revoked")),
        "{}",
        outcome.stdout
    );
    assert!(
        firing_kinds(&pool)
            .await
            .contains(&"consent_revoked".to_string())
    );

    let alerts = alertmanager.alerts().await;
    let revoked = alerts
        .iter()
        .find(|a| a["labels"]["alertname"] == "KodoAccessConsentRevoked")
        .expect("the alert reached Alertmanager");
    assert_eq!(revoked["labels"]["organization"], "contoso");
    assert_eq!(revoked["labels"]["tenant_id"], TENANT);
    assert_eq!(revoked["labels"]["client_id"], APP);
    assert_eq!(revoked["labels"]["severity"], "critical");
    assert!(
        revoked["annotations"]["admin_consent_url"]
            .as_str()
            .unwrap()
            .ends_with(&format!("/{TENANT}/adminconsent?client_id={APP}"))
    );
    assert!(
        revoked["annotations"]["action"]
            .as_str()
            .unwrap()
            .contains("admin consent")
    );
    let alerts_cli = env.exec(&["alerts"]).await;
    assert!(
        alerts_cli
            .success()
            .stdout
            .contains("KodoAccessConsentRevoked"),
        "{alerts_cli:?}"
    );
    // The periodic re-send keeps it active in Alertmanager, with endsAt ahead.
    let resend = env.exec(&["job", "run", "resend-alerts"]).await;
    assert!(resend.success().stdout.contains("re-sent"), "{resend:?}");
    let alerts = alertmanager.alerts().await;
    let revoked = alerts
        .iter()
        .find(|a| a["labels"]["alertname"] == "KodoAccessConsentRevoked")
        .unwrap();
    let ends: chrono::DateTime<chrono::Utc> = revoked["endsAt"].as_str().unwrap().parse().unwrap();
    assert!(
        ends > chrono::Utc::now() + chrono::Duration::minutes(3),
        "endsAt four re-send intervals ahead: {ends}"
    );

    sim.post(
        &format!("/_sim/tenants/{TENANT}/apps/{APP}/consent/grant"),
        serde_json::json!({}),
    )
    .await;
    let healed = env.exec(&["check", "contoso"]).await;
    assert!(
        healed
            .success()
            .stdout
            .contains("alerts resolved: consent_revoked"),
        "{healed:?}"
    );
    assert!(
        !firing_kinds(&pool)
            .await
            .contains(&"consent_revoked".to_string())
    );
    assert_eq!(
        alertmanager
            .active_names()
            .await
            .iter()
            .filter(|(_, name)| name == "KodoAccessConsentRevoked")
            .count(),
        0,
        "resolved in Alertmanager too"
    );
    sim.running.stop().await;
}

#[sqlx::test]
async fn alerts_wait_in_the_outbox_while_alertmanager_is_down(pool: PgPool) {
    let sim = Sim::start(&default_scenario()).await;
    let port = free_port();
    let env = TestEnv::with_extra(
        &pool,
        &config(
            &sim,
            &format!(
                "[alerts]\nmax_delivery_backoff = \"1s\"\n[[alerts.alertmanager]]\nname = \"am\"\nurl = \"http://127.0.0.1:{port}\"\n"
            ),
        ),
    );
    crate::sim_support::register_contoso(&env).await;
    sim.post(
        &format!("/_sim/tenants/{TENANT}/apps/{APP}/consent/revoke"),
        serde_json::json!({"resource": "exchange"}),
    )
    .await;
    env.exec(&["check", "contoso"])
        .await
        .fails_with(3, "not healthy");
    let (pending, attempts): (i64, i32) = sqlx::query_as(
        "SELECT count(*), max(attempts) FROM alert_outbox WHERE delivered_at IS NULL",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(
        pending >= 1 && attempts >= 1,
        "undelivered, with a failed attempt recorded"
    );

    let alertmanager = Alertmanager::start(Some(port)).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let run = env.exec(&["job", "run", "deliver-alerts"]).await;
    assert!(run.success().stdout.contains("delivered"), "{run:?}");
    let undelivered: i64 =
        sqlx::query_scalar("SELECT count(*) FROM alert_outbox WHERE delivered_at IS NULL")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(undelivered, 0);
    assert!(
        alertmanager
            .active_names()
            .await
            .contains(&("contoso".into(), "KodoAccessConsentRevoked".into()))
    );
    sim.running.stop().await;
}

#[sqlx::test]
async fn a_storm_of_5xx_and_429_never_says_access_is_gone(pool: PgPool) {
    let sim = Sim::start(&default_scenario()).await;
    let env = TestEnv::with_extra(&pool, &config(&sim, ""));
    crate::sim_support::register_contoso(&env).await;
    env.exec(&["check", "contoso"]).await.success();
    sim.put(
        "/_sim/faults",
        serde_json::json!({"error_rate": 0.6, "request_budget": 4, "retry_after_secs": 1}),
    )
    .await;
    let mut states = Vec::new();
    for _ in 0..6 {
        let outcome = env.exec(&["check", "contoso", "--output", "json"]).await;
        let results: Vec<serde_json::Value> =
            serde_json::from_str(&outcome.stdout).unwrap_or_default();
        states.push(
            results
                .first()
                .map(|r| r["state"].as_str().unwrap_or_default().to_string())
                .unwrap_or_default(),
        );
    }
    assert!(
        states.iter().any(|s| s == "check_failed"),
        "the storm must have been felt: {states:?}"
    );
    for state in &states {
        assert!(
            ["healthy", "check_failed"].contains(&state.as_str()),
            "{states:?}"
        );
    }
    let gone: i64 = sqlx::query_scalar("SELECT count(*) FROM alerts WHERE kind IN ('consent_revoked', 'secret_invalid', 'tenant_not_found', 'app_missing', 'permissions_missing')")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(gone, 0);
    // The last known state stays visible beside check_failed.
    let (state, last_known): (String, Option<String>) =
        sqlx::query_as("SELECT state, last_known_state FROM organization_status")
            .fetch_one(&pool)
            .await
            .unwrap();
    if state == "check_failed" {
        assert_eq!(last_known.as_deref(), Some("healthy"));
    }
    sim.running.stop().await;
}

#[sqlx::test]
async fn every_broken_tenant_gets_its_state(pool: PgPool) {
    let sim = Sim::start(&default_scenario()).await;
    let env = TestEnv::with_extra(&pool, &config(&sim, ""));
    crate::sim_support::register_contoso(&env).await;
    let state = |outcome: &Outcome| -> String {
        let results: Vec<serde_json::Value> =
            serde_json::from_str(&outcome.stdout).unwrap_or_else(|_| panic!("{outcome:?}"));
        results[0]["state"].as_str().unwrap().to_string()
    };
    let check = || env.exec(&["check", "contoso", "--output", "json"]);

    sim.post(
        &format!("/_sim/tenants/{TENANT}/apps/{APP}/consent/revoke"),
        serde_json::json!({"permissions": ["graph:Mail.ReadWrite"]}),
    )
    .await;
    assert_eq!(state(&check().await), "permissions_missing");
    sim.post(
        &format!("/_sim/tenants/{TENANT}/apps/{APP}/consent/grant"),
        serde_json::json!({}),
    )
    .await;
    sim.post(
        &format!("/_sim/tenants/{TENANT}/apps/{APP}/secrets"),
        serde_json::json!({"value": "Sne8Q~someone-else", "display_name": "added by hand"}),
    )
    .await;
    assert_eq!(state(&check().await), "degraded");
    sim.post(
        &format!("/_sim/tenants/{TENANT}/apps/{APP}/disable"),
        serde_json::json!({}),
    )
    .await;
    assert_eq!(state(&check().await), "app_disabled");
    sim.post(
        &format!("/_sim/tenants/{TENANT}/apps/{APP}/enable"),
        serde_json::json!({}),
    )
    .await;
    sim.put(
        &format!("/_sim/tenants/{TENANT}/policy"),
        serde_json::json!({"conditional_access_blocks": true}),
    )
    .await;
    assert_eq!(state(&check().await), "blocked_by_policy");
    sim.put(
        &format!("/_sim/tenants/{TENANT}/policy"),
        serde_json::json!({}),
    )
    .await;
    sim.put(
        &format!("/_sim/tenants/{TENANT}/faults"),
        serde_json::json!({"clock_offset_secs": 250 * 86400}),
    )
    .await;
    assert_eq!(state(&check().await), "secret_expired");
    sim.put(
        &format!("/_sim/tenants/{TENANT}/faults"),
        serde_json::json!({}),
    )
    .await;
    env.exec_with_stdin(&["org", "set-secret", "contoso"], "Wro8Q~not-the-secret")
        .await
        .success();
    assert_eq!(state(&check().await), "secret_invalid");
    sim.delete(&format!("/_sim/tenants/{TENANT}/apps/{APP}"))
        .await;
    assert_eq!(state(&check().await), "app_missing");
    sim.delete(&format!("/_sim/tenants/{TENANT}")).await;
    assert_eq!(state(&check().await), "tenant_not_found");
    let history: i64 = sqlx::query_scalar("SELECT count(*) FROM checks")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(history, 8);
    sim.running.stop().await;
}

/// Receives webhook posts and verifies their signatures independently of kodo-access.
pub async fn webhook_receiver(secret: &'static str) -> (u16, Arc<Mutex<Vec<serde_json::Value>>>) {
    use axum::body::Bytes;
    use axum::http::{HeaderMap, StatusCode};
    use hmac::Mac;
    let received = Arc::new(Mutex::new(Vec::new()));
    let sink = received.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: Bytes| {
            let sink = sink.clone();
            async move {
                let timestamp = headers
                    .get("x-kodo-access-timestamp")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_string();
                let signature = headers
                    .get("x-kodo-access-signature")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_string();
                let header = |name: &str| {
                    headers
                        .get(name)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_string()
                };
                let (purpose, delivery) = (
                    header("x-kodo-access-purpose"),
                    header("x-kodo-access-delivery"),
                );
                // Signed: the timestamp, what it is (alert or credential), a fresh delivery
                // id a receiver remembers within the replay window, and the body.
                let mut mac =
                    hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
                mac.update(format!("{timestamp}.{purpose}.{delivery}.").as_bytes());
                mac.update(&body);
                let known = matches!(purpose.as_str(), "alert" | "credential")
                    && uuid::Uuid::try_parse(&delivery).is_ok();
                let expected = format!(
                    "sha256={}",
                    mac.finalize()
                        .into_bytes()
                        .iter()
                        .map(|b| format!("{b:02x}"))
                        .collect::<String>()
                );
                let fresh = timestamp
                    .parse::<i64>()
                    .is_ok_and(|t| (chrono::Utc::now().timestamp() - t).abs() < 300);
                if signature != expected || !fresh || !known {
                    return StatusCode::UNAUTHORIZED;
                }
                sink.lock()
                    .unwrap()
                    .push(serde_json::from_slice(&body).unwrap());
                StatusCode::NO_CONTENT
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (port, received)
}

#[sqlx::test]
async fn webhooks_are_signed_and_silences_hold_them_back(pool: PgPool) {
    let sim = Sim::start(&default_scenario()).await;
    let (port, received) = webhook_receiver("whsec-test-0123456789abcdef0123456789").await;
    let dir = tempfile::tempdir().unwrap();
    let secret_file = dir.path().join("webhook-secret");
    write_file(
        &secret_file,
        "whsec-test-0123456789abcdef0123456789\n",
        0o600,
    );
    let env = TestEnv::with_extra(
        &pool,
        &config(
            &sim,
            &format!(
                "[[alerts.webhook]]\nname = \"ops\"\nurl = \"http://127.0.0.1:{port}/hook\"\nsecret_file = \"{}\"\n",
                secret_file.display()
            ),
        ),
    );
    crate::sim_support::register_contoso(&env).await;
    env.exec(&[
        "org",
        "silence",
        "contoso",
        "--for",
        "1h",
        "--reason",
        "tenant migration",
    ])
    .await
    .success();
    sim.post(
        &format!("/_sim/tenants/{TENANT}/apps/{APP}/consent/revoke"),
        serde_json::json!({"resource": "exchange"}),
    )
    .await;
    env.exec(&["check", "contoso"])
        .await
        .fails_with(3, "not healthy");
    assert!(
        firing_kinds(&pool)
            .await
            .contains(&"consent_revoked".to_string()),
        "the state is kept while silenced"
    );
    assert!(
        received.lock().unwrap().is_empty(),
        "nothing delivered while silenced"
    );
    assert!(env.exec(&["alerts"]).await.stdout.contains("silenced"));

    env.exec(&["org", "unsilence", "contoso"]).await.success();
    env.exec(&["job", "run", "deliver-alerts"]).await.success();
    let payloads = received.lock().unwrap().clone();
    let revoked = payloads
        .iter()
        .find(|p| p["kind"] == "consent_revoked")
        .expect("delivered after the silence, signature verified");
    assert_eq!(revoked["status"], "firing");
    assert_eq!(revoked["labels"]["organization"], "contoso");
    let audit = env.exec(&["audit", "contoso", "--output", "json"]).await;
    assert!(
        audit.stdout.contains("organization.silenced") && audit.stdout.contains("tenant migration")
    );
    sim.running.stop().await;
}

#[sqlx::test]
async fn the_daemon_checks_on_its_own_and_its_metrics_pass_promtool(pool: PgPool) {
    let sim = Sim::start(&default_scenario()).await;
    let env = TestEnv::with_extra(&pool, &config(&sim, ""));
    crate::sim_support::register_contoso(&env).await;
    sim.post(
        &format!("/_sim/tenants/{TENANT}/apps/{APP}/consent/revoke"),
        serde_json::json!({"permissions": ["graph:Mail.ReadWrite"]}),
    )
    .await;
    let daemon = crate::daemon_support::Daemon::start(&env, &[]);
    daemon.wait_ready().await;
    eventually(
        Duration::from_secs(20),
        "the daemon's own check to confirm permissions_missing",
        || async {
            let state: String = sqlx::query_scalar("SELECT state FROM organization_status")
                .fetch_one(&pool)
                .await
                .unwrap();
            state == "permissions_missing"
        },
    )
    .await;
    let (_, metrics) = daemon.get("/metrics").await.unwrap();
    for expected in [
        "kodo_access_organization_state{organization=\"contoso\",state=\"permissions_missing\"} 1",
        "kodo_access_organizations_by_state{state=\"permissions_missing\"} 1",
        // Every state is named, `unknown` (never checked yet) too.
        "kodo_access_organizations_by_state{state=\"unknown\"} 0",
        "kodo_access_alerts_firing{kind=\"permissions_missing\"} 1",
        "kodo_access_secret_expiry_timestamp_seconds{organization=\"contoso\"}",
        "kodo_access_last_successful_check_timestamp_seconds{organization=\"contoso\"}",
        "kodo_access_microsoft_requests_total{kind=\"token\",outcome=\"ok\"}",
        "kodo_access_check_duration_seconds_count",
    ] {
        assert!(
            metrics.contains(expected),
            "missing {expected} in:\n{metrics}"
        );
    }
    assert_promtool_clean(&metrics);
    assert!(!metrics.contains(SECRET));
    let (code, log) = daemon.terminate().await;
    assert_eq!(code, 0, "{log}");
    assert!(
        log.contains("alert firing") && !log.contains(SECRET),
        "{log}"
    );
    sim.running.stop().await;
}
