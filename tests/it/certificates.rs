//! Certificate credentials end to end: an organization moved from a secret to a
//! certificate gets SharePoint REST (refused to secret-based tokens) as well as Graph and
//! Exchange; a certificate Entra does not know is reported; bad pairs are refused and
//! change nothing; the private key is never stored or printed in the clear.

use sqlx::PgPool;

use crate::certificate_support::*;
use crate::sim_support::*;
use crate::support::*;

/// A self-signed RSA certificate and its key, written as an operator would hold them:
/// (certificate path, key path, certificate PEM).
fn certificate(env: &TestEnv, name: &str) -> (String, String, String) {
    let (pem, key) = pair(1, 3650);
    let cert_path = env.path(&format!("{name}.crt"));
    let key_path = env.path(&format!("{name}.key"));
    write_file(&cert_path, &pem, 0o644);
    write_file(&key_path, &key, 0o600);
    (
        cert_path.to_string_lossy().into_owned(),
        key_path.to_string_lossy().into_owned(),
        pem,
    )
}

async fn check(env: &TestEnv) -> serde_json::Value {
    let outcome = env.exec(&["check", "contoso", "--output", "json"]).await;
    let results: Vec<serde_json::Value> = serde_json::from_str(&outcome.stdout)
        .unwrap_or_else(|_| panic!("check output: {outcome:?}"));
    results[0].clone()
}

fn kinds(result: &serde_json::Value) -> Vec<String> {
    result["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|finding| finding["kind"].as_str().unwrap().to_string())
        .collect()
}

#[sqlx::test]
async fn moving_to_a_certificate_rescues_sharepoint_and_an_unknown_certificate_is_reported(
    pool: PgPool,
) {
    let sim = Sim::start(&default_scenario()).await;
    let env = TestEnv::with_extra(&pool, &crate::checks::config(&sim, ""));
    secret_contoso_on_sharepoint(&env).await;
    // With a secret, SharePoint REST refuses the app-only token.
    let with_secret = check(&env).await;
    assert_eq!(with_secret["state"], "degraded", "{with_secret}");
    assert!(kinds(&with_secret).contains(&"sharepoint_certificate_required".to_string()));
    // Its alert names the way out.
    let action: String = sqlx::query_scalar(
        "SELECT annotations->>'action' FROM alerts WHERE kind = 'sharepoint_certificate_required'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(
        action.contains("org set ORG --credential certificate"),
        "{action}"
    );

    // The administrator registers a certificate on the app; the operator hands it over.
    let (cert_file, key_file, cert_pem) = certificate(&env, "contoso");
    let registered = sim
        .post(
            &format!("/_sim/tenants/{TENANT}/apps/{APP}/certificates"),
            serde_json::json!({ "pem": cert_pem, "display_name": "kodo-access" }),
        )
        .await;
    let stored = env
        .exec(&[
            "org",
            "set-secret",
            "contoso",
            "--certificate-file",
            &cert_file,
            "--private-key-file",
            &key_file,
        ])
        .await;
    stored.success();
    let thumbprint = registered["thumbprint"].as_str().unwrap();
    assert!(stored.stdout.contains(thumbprint), "{stored:?}");

    let with_certificate = check(&env).await;
    assert_eq!(with_certificate["state"], "healthy", "{with_certificate}");
    assert!(
        !kinds(&with_certificate).contains(&"sharepoint_certificate_required".to_string()),
        "{with_certificate}"
    );
    assert_eq!(
        with_certificate["alerts_resolved"],
        serde_json::json!(["sharepoint_certificate_required"]),
        "{with_certificate}"
    );

    // The row says what it is; the private key is sealed, never in the clear.
    let (kind, stored_thumbprint, sealed): (String, String, Vec<u8>) = sqlx::query_as(
        "SELECT kind, thumbprint, secret_sealed FROM credentials WHERE status = 'current'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(
        (kind.as_str(), stored_thumbprint.as_str()),
        ("certificate", thumbprint)
    );
    let key_text = std::fs::read_to_string(&key_file).unwrap();
    let key_body = key_text.lines().nth(1).unwrap();
    assert!(!String::from_utf8_lossy(&sealed).contains("PRIVATE KEY"));
    assert!(!String::from_utf8_lossy(&sealed).contains(key_body));
    let show = env
        .exec(&["org", "show", "contoso", "--output", "json"])
        .await;
    assert!(!show.stdout.contains(key_body) && !show.stderr.contains(key_body));
    let shown: serde_json::Value = serde_json::from_str(&show.stdout).unwrap();
    let current = shown["credentials"]
        .as_array()
        .unwrap()
        .iter()
        .find(|credential| credential["status"] == "current")
        .unwrap()
        .clone();
    assert_eq!(
        (current["kind"].as_str(), current["thumbprint"].as_str()),
        (Some("certificate"), Some(thumbprint))
    );
    let table = env.exec(&["org", "show", "contoso"]).await;
    assert!(
        table.stdout.contains(thumbprint) && table.stdout.contains("certificate"),
        "{table:?}"
    );

    // Microsoft's keyId of the certificate is learned by thumbprint.
    let learned: Option<uuid::Uuid> =
        sqlx::query_scalar("SELECT key_id FROM credentials WHERE status = 'current'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(
        learned.map(|id| id.to_string()).as_deref(),
        registered["key_id"].as_str()
    );
    // A certificate someone else plants on the app is reported.
    let (_, _, planted_pem) = certificate(&env, "planted");
    let planted = sim
        .post(
            &format!("/_sim/tenants/{TENANT}/apps/{APP}/certificates"),
            serde_json::json!({ "pem": planted_pem, "display_name": "not ours" }),
        )
        .await;
    let with_planted = check(&env).await;
    assert_eq!(with_planted["state"], "degraded", "{with_planted}");
    let finding = with_planted["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["kind"] == "unknown_credential")
        .unwrap_or_else(|| panic!("{with_planted}"));
    assert_eq!(finding["details"][0]["thumbprint"], planted["thumbprint"]);
    sim.delete(&format!(
        "/_sim/tenants/{TENANT}/apps/{APP}/certificates/{}",
        planted["key_id"].as_str().unwrap()
    ))
    .await;

    // The administrator removes the certificate from the app: Entra answers AADSTS700027.
    let key_id = registered["key_id"].as_str().unwrap();
    sim.delete(&format!(
        "/_sim/tenants/{TENANT}/apps/{APP}/certificates/{key_id}"
    ))
    .await;
    assert_refused(
        &check(&env).await,
        "secret_invalid",
        "refuses the certificate",
        700027,
    );
    sim.running.stop().await;
}

#[sqlx::test]
async fn a_key_that_does_not_match_the_certificate_is_refused_and_nothing_is_written(pool: PgPool) {
    let env = TestEnv::new(&pool);
    let (cert_file, _, _) = certificate(&env, "one");
    let (_, other_key, _) = certificate(&env, "two");
    let add = |cert: &str, key: &str| {
        let args: Vec<String> = [
            "org",
            "add",
            "--name",
            "contoso",
            "--tenant-id",
            TENANT,
            "--client-id",
            APP,
            "--certificate-file",
            cert,
            "--private-key-file",
            key,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args
    };
    let args = add(&cert_file, &other_key);
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    env.exec(&refs)
        .await
        .fails_with(2, "the private key does not belong to the certificate");
    // A key readable by others is refused like a secret file.
    let (cert_file, key_file, _) = certificate(&env, "three");
    std::fs::set_permissions(
        &key_file,
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    )
    .unwrap();
    let args = add(&cert_file, &key_file);
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    env.exec(&refs).await.fails_with(2, "--private-key-file");
    let organizations: i64 = sqlx::query_scalar("SELECT count(*) FROM organizations")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(organizations, 0);
}

fn thumbprints(application: &kodo_access::microsoft::graph::Application) -> Vec<String> {
    application
        .key_credentials
        .iter()
        .filter_map(|credential| credential.thumbprint())
        .collect()
}

#[tokio::test]
async fn certificates_are_rolled_with_add_key_and_remove_key_and_added_by_update() {
    use kodo_access::microsoft::{Credential, GraphFailure, Removal, Resource, RetryPolicy};
    let sim = Sim::start(&default_scenario()).await;
    let client = crate::sim_support::client(RetryPolicy::NONE);
    let endpoints = sim.endpoints(TENANT, APP);
    let secret = secrecy::SecretString::from(SECRET.to_string());
    let graph = client
        .token(&endpoints, &secret, Resource::Graph)
        .await
        .unwrap();
    let application = client.get_application(&endpoints, &graph).await.unwrap();
    let object_id = application.id.clone();
    let (first, second, third, stranger) = (generated(), generated(), generated(), generated());

    // addKey cannot add the first certificate: no valid one to prove possession with.
    let refused = client
        .add_key(
            &endpoints,
            &graph,
            &object_id,
            &first,
            "kodo-access",
            &first,
        )
        .await
        .unwrap_err();
    assert_eq!(refused.kind, GraphFailure::Unauthorized, "{refused}");
    // An update of the whole list can (with the rights addPassword needs), once.
    for _ in 0..2 {
        client
            .add_key_by_update(&endpoints, &graph, &first, "kodo-access first")
            .await
            .unwrap();
    }
    let application = client.get_application(&endpoints, &graph).await.unwrap();
    assert_eq!(thumbprints(&application), [first.thumbprint_sha1_hex()]);
    assert_eq!(sim.counters().await["patch_keys"][APP].as_u64(), Some(1));

    // The first certificate proves possession for the second; a stranger's cannot.
    let stranger_refused = client
        .add_key(
            &endpoints,
            &graph,
            &object_id,
            &second,
            "kodo-access",
            &stranger,
        )
        .await
        .unwrap_err();
    assert_eq!(stranger_refused.kind, GraphFailure::Unauthorized);
    let added = client
        .add_key(
            &endpoints,
            &graph,
            &object_id,
            &second,
            "kodo-access second",
            &first,
        )
        .await
        .unwrap();
    assert_eq!(added.thumbprint(), Some(second.thumbprint_sha1_hex()));
    // The new certificate gets tokens, certificate-based ones.
    let with_second = client
        .token(
            &endpoints,
            &Credential::Certificate(second.clone()),
            Resource::Graph,
        )
        .await
        .unwrap();
    assert!(with_second.claims.authenticated_with_certificate());

    // The second removes the first; removing it again is success.
    let first_key = client
        .get_application(&endpoints, &graph)
        .await
        .unwrap()
        .key_credentials
        .iter()
        .find(|credential| credential.thumbprint() == Some(first.thumbprint_sha1_hex()))
        .unwrap()
        .key_id;
    for expected in [Removal::Removed, Removal::AlreadyGone] {
        let removal = client
            .remove_key(&endpoints, &graph, &object_id, first_key, &second)
            .await
            .unwrap();
        assert_eq!(removal, expected);
    }
    assert!(
        client
            .token(
                &endpoints,
                &Credential::Certificate(first.clone()),
                Resource::Graph
            )
            .await
            .is_err()
    );
    // An update keeps what is there (its keyId too) and adds the new one.
    client
        .add_key_by_update(&endpoints, &graph, &third, "kodo-access third")
        .await
        .unwrap();
    let application = client.get_application(&endpoints, &graph).await.unwrap();
    assert_eq!(
        thumbprints(&application),
        [second.thumbprint_sha1_hex(), third.thumbprint_sha1_hex()]
    );
    assert_eq!(application.key_credentials[0].key_id, added.key_id);
    sim.running.stop().await;
}

#[sqlx::test]
async fn a_certificate_is_rotated_verified_delivered_and_the_old_one_removed(pool: PgPool) {
    let sim = Sim::start(&default_scenario()).await;
    // Microsoft takes a few seconds to accept the new certificate.
    sim.put(
        &format!("/_sim/tenants/{TENANT}/faults"),
        serde_json::json!({"propagation_delay_secs": 5}),
    )
    .await;
    let (env, backup) = rotating_env(&pool, &sim, "1h", "verify_timeout = \"30s\"\n");
    let (old_pem, old_key) = pair(1, 10);
    let old = certificate_only_contoso(&sim, &env, (&old_pem, &old_key)).await;
    // A check learns the certificate's keyId, which its removal needs; ten days left is a
    // warning.
    assert_eq!(check(&env).await["state"], "secret_expiring");

    let rotated = env.exec(&["rotate", "contoso"]).await;
    rotated.success();
    assert!(rotated.stdout.contains("is activated"), "{rotated:?}");
    let state = sim.state().await;
    let certificates = state["tenants"][0]["apps"][0]["certificates"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(
        certificates.len(),
        2,
        "old and new during the grace period: {certificates:?}"
    );
    let counters = sim.counters().await;
    assert_eq!(counters["add_key"][APP].as_u64(), Some(1));
    assert!(
        counters["add_password"][APP].is_null(),
        "no secret was added: {counters}"
    );

    // The backup server received the certificate and its key, and they work.
    let delivered: serde_json::Value =
        serde_json::from_slice(&std::fs::read(backup.path().join("contoso.json")).unwrap())
            .unwrap();
    assert_eq!(delivered["version"], 2);
    assert_eq!(delivered["credential_type"], "certificate");
    assert!(delivered.get("client_secret").is_none());
    let new_thumbprint = delivered["thumbprint"].as_str().unwrap();
    assert_ne!(new_thumbprint, old["thumbprint"].as_str().unwrap());
    let received = kodo_access::microsoft::ClientCertificate::new(
        delivered["certificate"].as_str().unwrap().as_bytes(),
        delivered["private_key"].as_str().unwrap().as_bytes(),
    )
    .unwrap();
    assert_eq!(received.thumbprint_sha1_hex(), new_thumbprint);
    let client = crate::sim_support::client(kodo_access::microsoft::RetryPolicy::NONE);
    let token = client
        .token(
            &sim.endpoints(TENANT, APP),
            &kodo_access::microsoft::Credential::Certificate(std::sync::Arc::new(received)),
            kodo_access::microsoft::Resource::Graph,
        )
        .await
        .unwrap();
    assert!(token.claims.authenticated_with_certificate());
    // The new certificate is current, sealed; the daemon checks with it.
    let (kind, thumbprint): (String, String) =
        sqlx::query_as("SELECT kind, thumbprint FROM credentials WHERE status = 'current'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(
        (kind.as_str(), thumbprint.as_str()),
        ("certificate", new_thumbprint)
    );
    assert_eq!(check(&env).await["state"], "healthy");

    // After the grace period the replaced certificate, and only it, is removed.
    sqlx::query(
        "UPDATE credentials SET activated_at = now() - interval '2 hours' WHERE status = 'current'",
    )
    .execute(&pool)
    .await
    .unwrap();
    let finished = env.exec(&["rotate", "contoso"]).await;
    finished.success();
    assert!(finished.stdout.contains("is finished"), "{finished:?}");
    let state = sim.state().await;
    let certificates = state["tenants"][0]["apps"][0]["certificates"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(certificates.len(), 1, "{certificates:?}");
    assert_eq!(certificates[0]["thumbprint"], new_thumbprint);
    assert_eq!(sim.counters().await["remove_key"][APP].as_u64(), Some(1));
    let audit = env.exec(&["audit", "contoso", "--output", "json"]).await;
    for action in [
        "credential.prepared",
        "credential.added",
        "credential.delivered",
        "credential.activated",
        "credential.removed",
    ] {
        assert!(
            audit.stdout.contains(action),
            "{action} missing: {}",
            audit.stdout
        );
    }
    assert!(!audit.stdout.contains("PRIVATE KEY"));
    sim.running.stop().await;
}

/// `org set ORG --credential certificate` on a tenant that blocks new secrets: returns the
/// rotation's outcome after the grace period.
async fn migrate(pool: &PgPool, remove_secret: bool) -> (Sim, TestEnv, tempfile::TempDir) {
    let sim = Sim::start(&default_scenario()).await;
    sim.put(
        &format!("/_sim/tenants/{TENANT}/policy"),
        serde_json::json!({"secrets_blocked": true}),
    )
    .await;
    let backup = tempfile::tempdir().unwrap();
    let env = TestEnv::with_extra(
        pool,
        &crate::checks::config(
            &sim,
            &rotation_config(backup.path(), "1h", "verify_timeout = \"30s\"\n"),
        ),
    );
    secret_contoso_on_sharepoint(&env).await;
    let before = check(&env).await;
    assert_eq!(before["state"], "degraded", "{before}");
    let mut set = vec!["org", "set", "contoso", "--credential", "certificate"];
    if remove_secret {
        set.extend(["--remove-secret-after-grace", "on"]);
    }
    env.exec(&set).await.success();
    // The rotations job, as the daemon runs it.
    env.exec(&["job", "run", "rotations"]).await.success();
    let (kind, step): (String, String) = sqlx::query_as(
        "SELECT c.kind, r.step FROM credentials c JOIN rotations r ON r.new_credential_id = c.id",
    )
    .fetch_one(pool)
    .await
    .unwrap();
    assert_eq!((kind.as_str(), step.as_str()), ("certificate", "activated"));
    let counters = sim.counters().await;
    assert_eq!(
        counters["patch_keys"][APP].as_u64(),
        Some(1),
        "added by an update of keyCredentials"
    );
    assert!(
        counters["add_password"][APP].is_null(),
        "no secret asked of a tenant that blocks them"
    );
    // SharePoint REST answers now.
    let after = check(&env).await;
    assert_eq!(after["state"], "healthy", "{after}");
    let delivered: serde_json::Value =
        serde_json::from_slice(&std::fs::read(backup.path().join("contoso.json")).unwrap())
            .unwrap();
    assert_eq!(delivered["credential_type"], "certificate");
    // After the grace period the rotation finishes.
    sqlx::query(
        "UPDATE credentials SET activated_at = now() - interval '2 hours' WHERE status = 'current'",
    )
    .execute(pool)
    .await
    .unwrap();
    env.exec(&["rotate", "contoso"]).await.success();
    (sim, env, backup)
}

#[sqlx::test]
async fn moving_to_a_certificate_on_a_tenant_that_blocks_secrets_keeps_the_secret_unless_asked(
    pool: PgPool,
) {
    let (sim, env, _backup) = migrate(&pool, false).await;
    let state = sim.state().await;
    assert_eq!(
        state["tenants"][0]["apps"][0]["secrets"]
            .as_array()
            .unwrap()
            .len(),
        1,
        "the replaced secret is kept"
    );
    let audit = env.exec(&["audit", "contoso", "--output", "json"]).await;
    assert!(audit.stdout.contains("credential.kept"), "{}", audit.stdout);
    let finished: String = sqlx::query_scalar("SELECT step FROM rotations")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(finished, "finished");
    sim.running.stop().await;
}

#[sqlx::test]
async fn moving_to_a_certificate_removes_the_secret_after_the_grace_when_asked(pool: PgPool) {
    let (sim, env, _backup) = migrate(&pool, true).await;
    let state = sim.state().await;
    assert!(
        state["tenants"][0]["apps"][0]["secrets"]
            .as_array()
            .unwrap()
            .is_empty(),
        "{state}"
    );
    assert_eq!(
        state["tenants"][0]["apps"][0]["certificates"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let audit = env.exec(&["audit", "contoso", "--output", "json"]).await;
    assert!(
        audit.stdout.contains("credential.removed"),
        "{}",
        audit.stdout
    );
    assert_eq!(check(&env).await["state"], "healthy");
    sim.running.stop().await;
}

#[sqlx::test]
async fn every_answer_to_add_key_remove_key_and_the_update_lost_still_ends_with_one_certificate(
    pool: PgPool,
) {
    let sim = Sim::start(&default_scenario()).await;
    let backup = tempfile::tempdir().unwrap();
    let env = TestEnv::with_extra(
        &pool,
        &crate::checks::config(
            &sim,
            &rotation_config(backup.path(), "1h", "verify_timeout = \"30s\"\n"),
        ),
    );
    register_contoso(&env).await;
    env.exec(&["check", "contoso"]).await;
    // Microsoft acts on every write, and every answer is lost on the way back.
    sim.put(
        &format!("/_sim/tenants/{TENANT}/faults"),
        serde_json::json!({"lost_answer_rate": 1.0}),
    )
    .await;
    let app_certificates = || async {
        sim.state().await["tenants"][0]["apps"][0]["certificates"]
            .as_array()
            .unwrap()
            .clone()
    };
    // From the secret: the keyCredentials update's answer is lost.
    env.exec(&["org", "set", "contoso", "--credential", "certificate"])
        .await
        .success();
    let first = env.exec(&["rotate", "contoso"]).await;
    assert!(first.stdout.contains("is activated"), "{first:?}");
    assert_eq!(app_certificates().await.len(), 1);
    // From that certificate to the next: addKey's answer is lost.
    let finish_now = || async {
        sqlx::query(
            "UPDATE credentials SET activated_at = now() - interval '2 hours' WHERE status = 'current'",
        )
        .execute(&pool)
        .await
        .unwrap();
    };
    finish_now().await;
    env.exec(&["rotate", "contoso"]).await.success(); // finishes the first (the secret kept)
    let second = env.exec(&["rotate", "contoso"]).await;
    assert!(second.stdout.contains("is activated"), "{second:?}");
    let counters = sim.counters().await;
    assert_eq!(counters["add_key"][APP].as_u64(), Some(1), "{counters}");
    assert_eq!(app_certificates().await.len(), 2);
    // removeKey's answer is lost too: the replaced certificate is gone, and recorded so.
    finish_now().await;
    let finished = env.exec(&["rotate", "contoso"]).await;
    assert!(finished.stdout.contains("is finished"), "{finished:?}");
    let certificates = app_certificates().await;
    assert_eq!(certificates.len(), 1, "{certificates:?}");
    let lost: Vec<String> = sim.counters().await["recent"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|request| request["endpoint"].as_str())
        .filter(|endpoint| endpoint.ends_with("answer lost"))
        .map(str::to_string)
        .collect();
    for write in ["graph patch application", "graph addKey", "graph removeKey"] {
        assert!(
            lost.iter().any(|endpoint| endpoint.starts_with(write)),
            "{write}'s answer was lost: {lost:?}"
        );
    }
    let current: String =
        sqlx::query_scalar("SELECT thumbprint FROM credentials WHERE status = 'current'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(certificates[0]["thumbprint"], current.as_str());
    let rotations: Vec<(String, Option<String>)> =
        sqlx::query_as("SELECT step, outcome FROM rotations ORDER BY created_at")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(
        rotations,
        vec![
            ("finished".to_string(), Some("succeeded".to_string())),
            ("finished".to_string(), Some("succeeded".to_string()))
        ]
    );
    sim.running.stop().await;
}

#[sqlx::test]
async fn org_import_takes_certificates_by_path_all_or_nothing(pool: PgPool) {
    let env = TestEnv::new(&pool);
    let (cert_a, key_a, _) = certificate(&env, "a");
    let (cert_b, key_b, _) = certificate(&env, "b");
    let csv = env.path("orgs.csv");
    write_file(
        &csv,
        &format!(
            "name,tenant_id,client_id,secret,certificate_file,private_key_file\n\
             contoso,{TENANT},{APP},,{cert_a},{key_a}\n\
             fabrikam,a1b2c3d4-e5f6-4789-8abc-def012345678,{APP},Fab8Q~a-secret-for-fabrikam,,\n"
        ),
        0o600,
    );
    env.exec(&["org", "import", csv.to_str().unwrap()])
        .await
        .success();
    let kinds: Vec<(String, String)> = sqlx::query_as(
        "SELECT o.name, c.kind FROM organizations o JOIN credentials c ON c.organization_id = o.id ORDER BY o.name",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(
        kinds,
        vec![
            ("contoso".to_string(), "certificate".to_string()),
            ("fabrikam".to_string(), "secret".to_string())
        ]
    );
    // JSON too; a key that is not the certificate's refuses the whole file, naming the row.
    let json = env.path("orgs.json");
    write_file(
        &json,
        &serde_json::json!([
            { "name": "northwind", "tenant_id": "b1b2c3d4-e5f6-4789-8abc-def012345678", "client_id": APP,
              "certificate_file": cert_b, "private_key_file": key_b },
            { "name": "tailspin", "tenant_id": "c1b2c3d4-e5f6-4789-8abc-def012345678", "client_id": APP,
              "certificate_file": cert_b, "private_key_file": key_a },
        ])
        .to_string(),
        0o600,
    );
    env.exec(&["org", "import", json.to_str().unwrap()])
        .await
        .fails_with(2, "the private key does not belong to the certificate");
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM organizations")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(count, 2, "nothing of the refused file was written");
}
