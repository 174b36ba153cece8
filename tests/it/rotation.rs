//! Secret rotation: the journaled path against the simulated cloud
//! and the real PostgreSQL, with Microsoft's propagation delay.

use std::sync::Arc;
use std::time::Duration;

use kodo_access::domain::plan::RotationPolicy;
use kodo_access::domain::{CredentialId, OrganizationId, RotationStep};
use kodo_access::rotation::deliver::Deliverer;
use kodo_access::rotation::procedure::{Reached, RotationSettings, rotate};
use secrecy::SecretString;
use sqlx::PgPool;

use crate::sim_support::{APP, SECRET, Sim, TENANT, default_scenario, register_contoso};
use crate::support::*;

const ACTIVATED: Reached = Reached::Step(RotationStep::Activated);

async fn context(env: &TestEnv, pool: &PgPool) -> kodo_access::context::Context {
    let settings = kodo_access::config::Settings::load_with_environment(
        &kodo_access::config::ConfigLocation {
            path: env.config_path.clone(),
            explicit: true,
        },
        vec![],
    )
    .unwrap();
    let keyring = kodo_access::crypto::Keyring::load(&settings.crypto).unwrap();
    kodo_access::context::Context::new(
        Arc::new(settings),
        pool.clone(),
        Arc::new(keyring),
        Default::default(),
    )
    .unwrap()
}

#[sqlx::test]
async fn a_secret_is_replaced_verified_delivered_and_the_old_one_removed(pool: PgPool) {
    let sim = Sim::start(&default_scenario()).await;
    // Microsoft takes a minute to accept the new secret.
    sim.put(
        &format!("/_sim/tenants/{TENANT}/faults"),
        serde_json::json!({"propagation_delay_secs": 60}),
    )
    .await;
    let env = TestEnv::with_extra(&pool, &crate::checks::config(&sim, ""));
    register_contoso(&env).await;
    // A check learns the current secret's keyId, which removal needs.
    env.exec(&["check", "contoso"]).await.success();
    let organization: OrganizationId = sqlx::query_scalar("SELECT id FROM organizations")
        .fetch_one(&pool)
        .await
        .unwrap();
    let context = context(&env, &pool).await;
    let backup_dir = tempfile::tempdir().unwrap();
    let deliverers = [Deliverer::File {
        directory: backup_dir.path().into(),
        mode: 0o600,
        group: None,
        pkcs12: None,
    }];

    // With a grace period the old secret stays.
    let graceful = RotationSettings {
        policy: RotationPolicy::default(),
        verify_timeout: Duration::from_secs(120),
        grace: Duration::from_secs(3600),
    };
    let started = std::time::Instant::now();
    let started_at = std::time::SystemTime::now();
    let report = rotate(&context, organization, &deliverers, &graceful)
        .await
        .unwrap();
    let took = started.elapsed();
    assert!(
        (Duration::from_secs(60)..Duration::from_secs(70)).contains(&took),
        "the new secret was trusted once Microsoft accepted it, and soon after: {took:?}"
    );
    // Meanwhile Microsoft refused it (AADSTS7000215: 401 invalid_client), and nothing was
    // delivered or switched before it worked.
    let refused = sim.counters().await["recent"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|request| {
            request["endpoint"].as_str().unwrap().starts_with("token") && request["status"] == 401
        })
        .count();
    assert!(
        refused >= 5,
        "{refused} refused attempts during propagation"
    );
    let delivered_at = std::fs::metadata(backup_dir.path().join("contoso.json"))
        .unwrap()
        .modified()
        .unwrap();
    assert!(
        delivered_at >= started_at + Duration::from_secs(60),
        "delivered only once verified"
    );
    assert_eq!(report.step, ACTIVATED);
    let state = sim.state().await;
    let secrets = state["tenants"][0]["apps"][0]["secrets"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(secrets.len(), 2, "old and new during the grace period");
    assert!(
        secrets.iter().any(|s| s["display_name"]
            == format!("kodo-access rotation {}", report.rotation_id.unwrap()))
    );

    // The backup server's copy works.
    let delivered: serde_json::Value =
        serde_json::from_slice(&std::fs::read(backup_dir.path().join("contoso.json")).unwrap())
            .unwrap();
    let new_secret = SecretString::from(delivered["client_secret"].as_str().unwrap().to_string());
    assert_ne!(delivered["client_secret"], SECRET);
    let client = crate::sim_support::client(kodo_access::microsoft::RetryPolicy::NONE);
    client
        .token(
            &sim.endpoints(TENANT, APP),
            &new_secret,
            kodo_access::microsoft::Resource::Graph,
        )
        .await
        .unwrap();
    let (current_key, current_status): (Option<uuid::Uuid>, String) =
        sqlx::query_as("SELECT key_id, status FROM credentials WHERE status = 'current'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(
        (current_key, current_status.as_str()),
        (report.new_key_id, "current")
    );

    // After the grace period, only the replaced secret goes.
    let done = RotationSettings {
        grace: Duration::ZERO,
        ..graceful
    };
    let finished = rotate(&context, organization, &deliverers, &done)
        .await
        .unwrap();
    assert_eq!(
        (finished.rotation_id, finished.step.as_str()),
        (report.rotation_id, "finished")
    );
    let state = sim.state().await;
    let secrets = state["tenants"][0]["apps"][0]["secrets"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(secrets.len(), 1);
    assert_eq!(
        secrets[0]["key_id"]
            .as_str()
            .map(|s| s.parse::<uuid::Uuid>().unwrap()),
        report.new_key_id
    );
    let counters = sim.counters().await;
    assert_eq!(
        (
            counters["add_password"][APP].as_u64(),
            counters["remove_password"][APP].as_u64()
        ),
        (Some(1), Some(1))
    );
    let statuses: Vec<String> =
        sqlx::query_scalar("SELECT status FROM credentials ORDER BY created_at")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(statuses, ["removed", "current"]);
    let actions: Vec<String> = sqlx::query_scalar(
        "SELECT action FROM audit_log WHERE rotation_id IS NOT NULL ORDER BY id",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(
        actions,
        [
            "rotation.started",
            "credential.added",
            "credential.verified",
            "credential.delivered",
            "credential.activated",
            // Journaled before the call to Microsoft, confirmed after.
            "credential.removing",
            "credential.removed"
        ]
    );
    // Nothing secret in the audit log, nor anywhere in the database.
    let audit: String =
        sqlx::query_scalar("SELECT COALESCE(string_agg(details::text, ' '), '') FROM audit_log")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert!(!audit.contains(new_secret_text(&delivered)) && !audit.contains(SECRET));
    let dump = crate::secrets::pg_dump(&env);
    for secret in [new_secret_text(&delivered), SECRET] {
        assert!(
            !dump.contains(&secret[3..]),
            "the database holds a secret in plain text"
        );
    }
    sim.running.stop().await;
}

fn new_secret_text(delivered: &serde_json::Value) -> &str {
    delivered["client_secret"].as_str().unwrap()
}

#[sqlx::test]
async fn a_refused_add_password_records_the_failure_and_changes_nothing(pool: PgPool) {
    let sim = Sim::start(&default_scenario()).await;
    sim.put(
        &format!("/_sim/tenants/{TENANT}/apps/{APP}/ownership"),
        serde_json::json!({"owns_itself": false}),
    )
    .await;
    let env = TestEnv::with_extra(&pool, &crate::checks::config(&sim, ""));
    register_contoso(&env).await;
    let organization: OrganizationId = sqlx::query_scalar("SELECT id FROM organizations")
        .fetch_one(&pool)
        .await
        .unwrap();
    let context = context(&env, &pool).await;
    let settings = RotationSettings {
        policy: RotationPolicy::default(),
        verify_timeout: Duration::from_secs(5),
        grace: Duration::ZERO,
    };
    let error = rotate(&context, organization, &[], &settings)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("forbidden") && error.contains("Authorization_RequestDenied"),
        "{error}"
    );
    let (step, attempts, last_error): (String, i32, Option<String>) =
        sqlx::query_as("SELECT step, attempts, last_error FROM rotations")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!((step.as_str(), attempts), ("intent", 1));
    assert!(last_error.unwrap().contains("Authorization_RequestDenied"));
    let credentials: i64 = sqlx::query_scalar("SELECT count(*) FROM credentials")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(credentials, 1, "nothing added");
    assert_eq!(sim.counters().await["add_password"][APP].as_u64(), None);
    sim.running.stop().await;
}

#[sqlx::test]
async fn a_secret_created_by_a_rotation_that_died_before_storing_it_is_removed(pool: PgPool) {
    let sim = Sim::start(&default_scenario()).await;
    let env = TestEnv::with_extra(&pool, &crate::checks::config(&sim, ""));
    register_contoso(&env).await;
    env.exec(&["check", "contoso"]).await.success();
    let (organization, current): (OrganizationId, CredentialId) =
        sqlx::query_as("SELECT organization_id, id FROM credentials")
            .fetch_one(&pool)
            .await
            .unwrap();
    // The intent was recorded, Microsoft created the secret, and the daemon died before
    // storing it: the journal says "intent", the app holds a secret nobody knows.
    let rotation_id = kodo_access::domain::RotationId::new();
    let mut connection = pool.acquire().await.unwrap();
    kodo_access::store::rotations::begin(
        &mut connection,
        rotation_id,
        organization,
        Some(current),
        "due",
    )
    .await
    .unwrap();
    drop(connection);
    let client = crate::sim_support::client(kodo_access::microsoft::RetryPolicy::NONE);
    let endpoints = sim.endpoints(TENANT, APP);
    let token = client
        .token(
            &endpoints,
            &SecretString::from(SECRET),
            kodo_access::microsoft::Resource::Graph,
        )
        .await
        .unwrap();
    let lost = client
        .add_password(
            &endpoints,
            &token,
            &format!("kodo-access rotation {rotation_id}"),
            chrono::Utc::now() + chrono::Duration::days(180),
        )
        .await
        .unwrap();

    let context = context(&env, &pool).await;
    let settings = RotationSettings {
        policy: RotationPolicy::default(),
        verify_timeout: Duration::from_secs(10),
        grace: Duration::ZERO,
    };
    let report = rotate(&context, organization, &[], &settings)
        .await
        .unwrap();
    assert_eq!(
        (report.rotation_id, report.step.as_str()),
        (Some(rotation_id), "finished")
    );
    let state = sim.state().await;
    let key_ids: Vec<String> = state["tenants"][0]["apps"][0]["secrets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["key_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        key_ids,
        [report.new_key_id.unwrap().to_string()],
        "the orphan and the replaced secret are gone; only the new one is left"
    );
    assert_ne!(report.new_key_id, Some(lost.key_id));
    let orphan_audit: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM audit_log WHERE action = 'credential.orphan_removed' AND key_id = $1",
    )
    .bind(lost.key_id)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(orphan_audit, 1);
    sim.running.stop().await;
}

#[sqlx::test]
async fn the_job_rotates_what_is_due_and_finishes_after_the_grace_period(pool: PgPool) {
    // The secret expires in 5 days: within the 30-day lead time.
    let scenario = default_scenario().replace("expires_in_days = 200", "expires_in_days = 5");
    let sim = Sim::start(&scenario).await;
    let backup_dir = tempfile::tempdir().unwrap();
    let extra = format!(
        "[rotation]\ngrace = \"1s\"\nverify_timeout = \"20s\"\n[[rotation.file]]\ndirectory = \"{}\"\nmode = \"0600\"\n",
        backup_dir.path().display()
    );
    let env = TestEnv::with_extra(&pool, &crate::checks::config(&sim, &extra));
    register_contoso(&env).await;
    env.exec_with_stdin(
        &[
            "org",
            "add",
            "--name",
            "other",
            "--tenant-id",
            "0b0b0b0b-1c1c-4d2d-8e3e-4f4f4f4f4f4f",
            "--client-id",
            "5a5a5a5a-6b6b-4c7c-8d8d-9e9e9e9e9e9e",
            "--cloud",
            "sim",
        ],
        "Oth8Q~x",
    )
    .await
    .success();
    env.exec(&["org", "set", "other", "--rotation", "off"])
        .await
        .success();
    // Nothing is known about the expiry yet: nothing to plan on.
    let nothing = env.exec(&["job", "run", "rotations"]).await;
    assert!(
        nothing.success().stdout.contains("nothing to do"),
        "{nothing:?}"
    );
    env.exec(&["check", "contoso"]).await; // learns the expiry (the state is secret_expiring)
    let run = env.exec(&["job", "run", "rotations"]).await;
    assert!(
        run.success()
            .stdout
            .contains("advanced 1 rotation(s), 0 failed"),
        "{run:?}"
    );
    let history = env
        .exec(&["rotations", "contoso", "--output", "json"])
        .await;
    let rows: Vec<serde_json::Value> = serde_json::from_str(&history.success().stdout).unwrap();
    assert_eq!(
        (rows.len(), rows[0]["step"].as_str()),
        (1, Some("activated"))
    );
    assert!(backup_dir.path().join("contoso.json").exists());
    assert!(
        !backup_dir.path().join("other.json").exists(),
        "rotation off for other"
    );

    tokio::time::sleep(Duration::from_millis(1200)).await;
    env.exec(&["job", "run", "rotations"]).await.success();
    let rows: Vec<serde_json::Value> =
        serde_json::from_str(&env.exec(&["rotations", "--output", "json"]).await.stdout).unwrap();
    assert_eq!(
        (rows[0]["step"].as_str(), rows[0]["outcome"].as_str()),
        (Some("finished"), Some("succeeded"))
    );
    let state = sim.state().await;
    assert_eq!(
        state["tenants"][0]["apps"][0]["secrets"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    // The new secret lives 180 days: no longer due, the organization checks healthy again.
    assert!(
        env.exec(&["job", "run", "rotations"])
            .await
            .success()
            .stdout
            .contains("nothing to do")
    );
    let check = env.exec(&["check", "contoso", "--output", "json"]).await;
    let results: Vec<serde_json::Value> = serde_json::from_str(&check.stdout).unwrap();
    assert_eq!(results[0]["state"], "healthy", "{check:?}");
    sim.running.stop().await;
}

#[sqlx::test]
async fn rotate_on_demand_from_the_command_line(pool: PgPool) {
    let sim = Sim::start(&default_scenario()).await;
    let env = TestEnv::with_extra(&pool, &crate::checks::config(&sim, ""));
    register_contoso(&env).await;
    let outcome = env.exec(&["rotate", "contoso"]).await;
    assert!(
        outcome
            .success()
            .stdout
            .contains("is activated (the replaced secret is removed after the grace period)"),
        "{outcome:?}"
    );
    let table = env.exec(&["rotations"]).await;
    assert!(
        table.success().stdout.contains("activated") && table.stdout.contains("in progress"),
        "{table:?}"
    );
    env.exec(&["rotate", "nobody"])
        .await
        .fails_with(2, "no organization nobody");
    sim.running.stop().await;
}

#[sqlx::test]
async fn two_rotations_of_one_organization_at_once_change_things_once(pool: PgPool) {
    let sim = Sim::start(&default_scenario()).await;
    sim.put(
        &format!("/_sim/tenants/{TENANT}/faults"),
        serde_json::json!({"propagation_delay_secs": 2}),
    )
    .await;
    let env = TestEnv::with_extra(&pool, &crate::checks::config(&sim, ""));
    register_contoso(&env).await;
    let organization: OrganizationId = sqlx::query_scalar("SELECT id FROM organizations")
        .fetch_one(&pool)
        .await
        .unwrap();
    // Two daemons' worth of contexts against one database.
    let first = context(&env, &pool).await;
    let second = context(&env, &pool).await;
    let settings = RotationSettings {
        policy: RotationPolicy::default(),
        verify_timeout: Duration::from_secs(20),
        grace: Duration::from_secs(3600),
    };
    let (a, b) = tokio::join!(rotate(&first, organization, &[], &settings), async {
        // Start while the first is waiting for Microsoft to accept its new secret.
        tokio::time::sleep(Duration::from_millis(500)).await;
        rotate(&second, organization, &[], &settings).await
    });
    // The second finds the first verifying (which holds no lock: it only reads) and joins
    // in, or finds the lock taken; either way every change happens exactly once. Joined in,
    // it goes on if its verification is recorded first, and otherwise stops, saying that
    // another process carries the rotation on.
    assert_eq!(a.unwrap().step, ACTIVATED);
    match b {
        Ok(report) => assert!(
            [ACTIVATED, Reached::Elsewhere].contains(&report.step),
            "{report:?}"
        ),
        Err(busy) => assert!(
            matches!(
                busy,
                kodo_access::rotation::procedure::RotationError::Busy(_)
            ),
            "{busy}"
        ),
    }
    assert_eq!(
        sim.counters().await["add_password"][APP].as_u64(),
        Some(1),
        "exactly one new secret"
    );
    let changes: Vec<(String, i64)> = sqlx::query_as(
        "SELECT action, count(*) FROM audit_log WHERE actor = 'rotation' AND action LIKE 'credential.%' GROUP BY action ORDER BY action",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(
        changes,
        [
            ("credential.activated".to_string(), 1),
            ("credential.added".to_string(), 1),
            ("credential.delivered".to_string(), 1),
            ("credential.verified".to_string(), 1),
        ]
    );
    // Once the first is done, the lock is free again (the rotation resumes and waits for its grace).
    assert_eq!(
        rotate(&second, organization, &[], &settings)
            .await
            .unwrap()
            .step,
        ACTIVATED
    );
    sim.running.stop().await;
}

#[sqlx::test]
async fn the_webhook_deliverer_posts_the_new_secret_signed(pool: PgPool) {
    let sim = Sim::start(&default_scenario()).await;
    let (port, received) =
        crate::checks::webhook_receiver("rotation-hook-key-0123456789abcdef0123").await;
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("hook-key");
    write_file(&key_file, "rotation-hook-key-0123456789abcdef0123\n", 0o600);
    let env = TestEnv::with_extra(&pool, &crate::checks::config(&sim, ""));
    register_contoso(&env).await;
    let organization: OrganizationId = sqlx::query_scalar("SELECT id FROM organizations")
        .fetch_one(&pool)
        .await
        .unwrap();
    let context = context(&env, &pool).await;
    let deliverers = [Deliverer::Webhook {
        url: format!("http://127.0.0.1:{port}/hook").parse().unwrap(),
        key: kodo_access::config::SecretSource::File {
            key: "test".into(),
            path: key_file,
        },
        access: Default::default(),
    }];
    let settings = RotationSettings {
        policy: RotationPolicy::default(),
        verify_timeout: Duration::from_secs(10),
        grace: Duration::from_secs(3600),
    };
    let report = rotate(&context, organization, &deliverers, &settings)
        .await
        .unwrap();
    assert_eq!(report.step, ACTIVATED);
    // The receiver verified the signature independently before accepting the post.
    let posts = received.lock().unwrap().clone();
    assert_eq!(posts.len(), 1);
    assert_eq!(posts[0]["organization"], "contoso");
    assert_eq!(
        posts[0]["secret_id"]
            .as_str()
            .map(|s| s.parse::<uuid::Uuid>().unwrap()),
        report.new_key_id
    );
    let secret = SecretString::from(posts[0]["client_secret"].as_str().unwrap().to_string());
    let client = crate::sim_support::client(kodo_access::microsoft::RetryPolicy::NONE);
    client
        .token(
            &sim.endpoints(TENANT, APP),
            &secret,
            kodo_access::microsoft::Resource::Graph,
        )
        .await
        .unwrap();
    sim.running.stop().await;
}

#[sqlx::test]
async fn an_organization_with_its_own_lead_time_is_rotated_earlier(pool: PgPool) {
    // 100 days left: not due with the default 30-day lead time.
    let scenario = default_scenario().replace("expires_in_days = 200", "expires_in_days = 100");
    let sim = Sim::start(&scenario).await;
    let backup_dir = tempfile::tempdir().unwrap();
    let extra = format!(
        "[rotation]\ngrace = \"1h\"\n[[rotation.file]]\ndirectory = \"{}\"\nmode = \"0600\"\n",
        backup_dir.path().display()
    );
    let env = TestEnv::with_extra(&pool, &crate::checks::config(&sim, &extra));
    register_contoso(&env).await;
    env.exec(&["check", "contoso"]).await.success(); // learns the expiry
    let idle = env.exec(&["job", "run", "rotations"]).await;
    assert!(idle.success().stdout.contains("nothing to do"), "{idle:?}");
    env.exec(&["org", "set", "contoso", "--rotation-lead-time", "200d"])
        .await
        .fails_with(2, "less than rotation.lifetime");
    env.exec(&["org", "set", "contoso", "--rotation-lead-time", "120d"])
        .await
        .success();
    let run = env.exec(&["job", "run", "rotations"]).await;
    assert!(
        run.success().stdout.contains("advanced 1 rotation(s)"),
        "{run:?}"
    );
    assert!(backup_dir.path().join("contoso.json").exists());
    env.exec(&["org", "set", "contoso", "--rotation-lead-time", "default"])
        .await
        .success();
    let settings: serde_json::Value = sqlx::query_scalar("SELECT settings FROM organizations")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(
        settings.get("rotation_lead_time_secs").is_none(),
        "{settings}"
    );
    let audit: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM audit_log WHERE details ? 'rotation_lead_time_secs'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(audit, 2);
    sim.running.stop().await;
}

#[sqlx::test]
async fn deliverers_serve_every_organization_or_only_those_they_name(pool: PgPool) {
    const OTHER_TENANT: &str = "0b0b0b0b-1c1c-4d2d-8e3e-4f4f4f4f4f4f";
    const OTHER_APP: &str = "5a5a5a5a-6b6b-4c7c-8d8d-9e9e9e9e9e9e";
    let scenario = default_scenario().replace("expires_in_days = 200", "expires_in_days = 5")
        + &format!(
            "[[tenants]]\nid = \"{OTHER_TENANT}\"\n[[tenants.apps]]\napp_id = \"{OTHER_APP}\"\npermissions = \"all\"\n[[tenants.apps.secrets]]\nvalue = \"Oth8Q~other-secret\"\nexpires_in_days = 5\n"
        );
    let sim = Sim::start(&scenario).await;
    let everyone = tempfile::tempdir().unwrap();
    let contoso_only = tempfile::tempdir().unwrap();
    let scoped = format!(
        "[[rotation.file]]\ndirectory = \"{}\"\norganizations = [\"contoso\"]\n",
        contoso_only.path().display()
    );
    // First only the deliverer that serves contoso: other is not rotated (its backup server
    // would never get the new secret), and its expiring secret is alerted on instead.
    let env = TestEnv::with_extra(
        &pool,
        &crate::checks::config(&sim, &format!("[rotation]\ngrace = \"0s\"\n{scoped}")),
    );
    register_contoso(&env).await;
    env.exec_with_stdin(
        &[
            "org",
            "add",
            "--name",
            "other",
            "--tenant-id",
            OTHER_TENANT,
            "--client-id",
            OTHER_APP,
            "--cloud",
            "sim",
        ],
        "Oth8Q~other-secret",
    )
    .await
    .success();
    env.exec(&["check", "--all"]).await; // learns the expiries
    let run = env.exec(&["job", "run", "rotations"]).await;
    assert!(
        run.success().stdout.contains("advanced 1 rotation(s)"),
        "{run:?}"
    );
    assert!(contoso_only.path().join("contoso.json").exists());
    assert!(!contoso_only.path().join("other.json").exists());
    env.exec(&["check", "--all"]).await;
    let firing: Vec<(String, String)> = sqlx::query_as(
        "SELECT o.name, a.kind FROM alerts a JOIN organizations o ON o.id = a.organization_id
         WHERE a.status = 'firing' AND a.kind LIKE 'secret_%' ORDER BY 1",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(
        firing,
        [("other".to_string(), "secret_expiring".to_string())]
    );
    let show = env.exec(&["org", "show", "other"]).await;
    assert!(
        show.success().stdout.contains(
            "rotation:         off: no [[rotation.*]] deliverer serves this organization"
        ),
        "{show:?}"
    );

    // Then a deliverer for everyone as well: other is rotated, to that one only.
    env.write_config(&crate::checks::config(
        &sim,
        &format!(
            "[rotation]\ngrace = \"0s\"\n{scoped}[[rotation.file]]\ndirectory = \"{}\"\n",
            everyone.path().display()
        ),
    ));
    let run = env.exec(&["job", "run", "rotations"]).await;
    assert!(
        run.success().stdout.contains("advanced 1 rotation(s)"),
        "{run:?}"
    );
    assert!(everyone.path().join("other.json").exists());
    assert!(!contoso_only.path().join("other.json").exists());
    env.exec(&["check", "--all"]).await;
    let expiring: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM alerts WHERE status = 'firing' AND kind = 'secret_expiring'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(expiring, 0, "both rotated: nothing expiring");
    sim.running.stop().await;
}
