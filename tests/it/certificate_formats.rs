//! Certificates beyond the PEM pair: PKCS#12 files in (made by OpenSSL, legacy and modern
//! encryption) and out (the file deliverer's `.pfx`, opened by OpenSSL and used for a
//! token); expired certificates (refused at registration, `secret_expired` when they run
//! out); credentials planted where the app registration's page does not show them (the
//! service principal, federated identity credentials); a tenant whose policy allows
//! certificates a shorter life; new organizations marked for certificates by configuration.

use std::process::{Command, Stdio};

use sqlx::PgPool;

use crate::certificate_support::*;
use crate::sim_support::*;
use crate::support::*;

async fn check(env: &TestEnv) -> serde_json::Value {
    let outcome = env.exec(&["check", "contoso", "--output", "json"]).await;
    let results: Vec<serde_json::Value> = serde_json::from_str(&outcome.stdout)
        .unwrap_or_else(|_| panic!("check output: {outcome:?}"));
    results[0].clone()
}

/// Runs OpenSSL's command line (an implementation independent of kodo-access's).
fn openssl(args: &[&str], stdin: &[u8]) -> Vec<u8> {
    let mut child = Command::new("openssl")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("openssl");
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), stdin).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

/// A PKCS#12 file of `(pem, key)` made by OpenSSL under `passphrase`, `legacy` with the
/// 3DES/RC2 scheme older Windows and OpenSSL exports use.
fn pfx(
    env: &TestEnv,
    name: &str,
    (pem, key): (&str, &str),
    passphrase: &str,
    legacy: bool,
) -> String {
    let bundle = env.path(&format!("{name}.pem"));
    write_file(&bundle, &format!("{pem}{key}"), 0o600);
    let out = env.path(&format!("{name}.pfx"));
    let mut args = vec![
        "pkcs12",
        "-export",
        "-in",
        bundle.to_str().unwrap(),
        "-out",
        out.to_str().unwrap(),
        "-passout",
    ];
    let pass = format!("pass:{passphrase}");
    args.push(&pass);
    if legacy {
        args.extend([
            "-certpbe",
            "PBE-SHA1-3DES",
            "-keypbe",
            "PBE-SHA1-3DES",
            "-macalg",
            "sha1",
        ]);
    }
    openssl(&args, b"");
    std::fs::remove_file(&bundle).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o600)).unwrap();
    out.to_string_lossy().into_owned()
}

#[sqlx::test]
async fn a_pkcs12_file_registers_a_certificate_and_rotation_delivers_one_openssl_opens(
    pool: PgPool,
) {
    let sim = Sim::start(&default_scenario()).await;
    let backup = tempfile::tempdir().unwrap();
    let passphrase_file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(passphrase_file.path(), "backup server's passphrase\n").unwrap();
    let rotation = format!(
        "{}pkcs12_passphrase_file = \"{}\"\n",
        rotation_config(backup.path(), "1h", "verify_timeout = \"30s\"\n"),
        passphrase_file.path().display()
    );
    let env = TestEnv::with_extra(&pool, &crate::checks::config(&sim, &rotation));
    // The scenario's secret goes; the app signs in with a certificate only.
    let (pem, key) = pair(1, 10);
    certificate_only_contoso(&sim, &env, (&pem, &key)).await;
    env.exec(&["org", "remove", "contoso", "--yes"])
        .await
        .success();

    // A wrong passphrase, a passphrase file others may read: refused, nothing written.
    let modern = pfx(&env, "modern", (&pem, &key), "s3cret", false);
    write_file(&env.path("wrong"), "not it", 0o600);
    let add = |file: String, passphrase: String| {
        let env = &env;
        async move {
            env.exec(&[
                "org",
                "add",
                "--name",
                "contoso",
                "--tenant-id",
                TENANT,
                "--client-id",
                APP,
                "--cloud",
                "sim",
                "--pkcs12-file",
                &file,
                "--pkcs12-passphrase-file",
                &passphrase,
            ])
            .await
        }
    };
    let wrong = add(modern.clone(), env.path("wrong").to_string_lossy().into()).await;
    assert_eq!(wrong.code, 2, "{wrong:?}");
    assert!(wrong.stderr.contains("passphrase is wrong"), "{wrong:?}");
    write_file(&env.path("open"), "s3cret", 0o644);
    let open = add(modern.clone(), env.path("open").to_string_lossy().into()).await;
    assert_eq!(open.code, 2, "{open:?}");
    assert!(
        open.stderr.contains("accessible to other users"),
        "{open:?}"
    );
    let organizations: i64 = sqlx::query_scalar("SELECT count(*) FROM organizations")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(organizations, 0);

    // A legacy (3DES) export opens as well as a modern (AES) one; the check signs in with it.
    let legacy = pfx(&env, "legacy", (&pem, &key), "s3cret", true);
    write_file(&env.path("right"), "s3cret\n", 0o600);
    let added = add(legacy, env.path("right").to_string_lossy().into()).await;
    added.success();
    assert_eq!(check(&env).await["state"], "secret_expiring");

    // Rotation hands the backup server a PKCS#12 file beside the JSON document.
    env.exec(&["rotate", "contoso"]).await.success();
    let delivered: serde_json::Value =
        serde_json::from_slice(&std::fs::read(backup.path().join("contoso.json")).unwrap())
            .unwrap();
    let pfx_path = backup.path().join("contoso.pfx");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&pfx_path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let pfx_bytes = std::fs::read(&pfx_path).unwrap();
    assert!(!String::from_utf8_lossy(&pfx_bytes).contains("PRIVATE KEY"));
    // OpenSSL opens it with the configured passphrase and finds the delivered certificate
    // and its key; with them, Entra issues a token.
    let opened = String::from_utf8(openssl(
        &[
            "pkcs12",
            "-nodes",
            "-passin",
            "pass:backup server's passphrase",
        ],
        &pfx_bytes,
    ))
    .unwrap();
    let certificate_pem = &opened[opened.find("-----BEGIN CERTIFICATE-----").unwrap()
        ..opened.find("-----END CERTIFICATE-----").unwrap() + 26];
    let key_pem = &opened[opened.find("-----BEGIN PRIVATE KEY-----").unwrap()
        ..opened.find("-----END PRIVATE KEY-----").unwrap() + 25];
    let received = kodo_access::microsoft::ClientCertificate::new(
        certificate_pem.as_bytes(),
        key_pem.as_bytes(),
    )
    .unwrap();
    assert_eq!(
        received.thumbprint_sha1_hex(),
        delivered["thumbprint"].as_str().unwrap()
    );
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

    // Removing the organization takes both files back.
    let removed = env.exec(&["org", "remove", "contoso", "--yes"]).await;
    removed.success();
    assert!(!pfx_path.exists() && !backup.path().join("contoso.json").exists());
    sim.running.stop().await;
}

/// A certificate valid from a minute ago for `seconds`: (certificate PEM, key PEM).
fn short_lived(seconds: i64) -> (String, String) {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["short.kodo-access.test".into()]).unwrap();
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::minutes(1);
    params.not_after = now + time::Duration::seconds(seconds);
    (params.self_signed(&key).unwrap().pem(), key.serialize_pem())
}

#[sqlx::test]
async fn an_expired_certificate_is_refused_at_registration_and_one_that_runs_out_is_secret_expired(
    pool: PgPool,
) {
    let sim = Sim::start(&default_scenario()).await;
    let env = TestEnv::with_extra(&pool, &crate::checks::config(&sim, ""));
    let (old_pem, old_key) = short_lived(-60);
    let refused = add_with_certificate(&env, "contoso", TENANT, (&old_pem, &old_key)).await;
    assert_eq!(refused.code, 2, "{refused:?}");
    assert!(refused.stderr.contains("expired on"), "{refused:?}");

    // Valid for a few more seconds: healthy (expiring), then expired, said as such.
    let (pem, key) = short_lived(4);
    certificate_only_contoso(&sim, &env, (&pem, &key)).await;
    assert_eq!(check(&env).await["state"], "secret_expiring");
    tokio::time::sleep(std::time::Duration::from_secs(5)).await;
    assert_refused(
        &check(&env).await,
        "secret_expired",
        "the certificate expired on",
        700027,
    );
    sim.running.stop().await;
}

#[sqlx::test]
async fn credentials_planted_on_the_service_principal_or_federated_are_unknown_credentials(
    pool: PgPool,
) {
    let sim = Sim::start(&default_scenario()).await;
    let env = TestEnv::with_extra(&pool, &crate::checks::config(&sim, ""));
    let (pem, key) = pair(1, 365);
    certificate_only_contoso(&sim, &env, (&pem, &key)).await;
    assert_eq!(check(&env).await["state"], "healthy");

    // A certificate on the service principal: the app registration's page never shows it.
    let (planted_pem, _) = pair(1, 365);
    let planted = sim
        .post(
            &format!("/_sim/tenants/{TENANT}/apps/{APP}/service-principal/certificates"),
            serde_json::json!({ "pem": planted_pem, "display_name": "backdoor" }),
        )
        .await;
    let found = check(&env).await;
    assert_eq!(found["state"], "degraded", "{found}");
    let finding = found["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["kind"] == "unknown_credential")
        .unwrap_or_else(|| panic!("{found}"))
        .clone();
    assert!(
        finding["message"]
            .as_str()
            .unwrap()
            .contains("on the app's service principal"),
        "{finding}"
    );
    assert_eq!(finding["details"][0]["place"], "service_principal");
    assert_eq!(finding["details"][0]["thumbprint"], planted["thumbprint"]);

    // A federated identity credential: tokens of another identity provider let it in.
    sim.post(
        &format!("/_sim/tenants/{TENANT}/apps/{APP}/federated-credentials"),
        serde_json::json!({
            "name": "deploy",
            "issuer": "https://token.actions.githubusercontent.com",
            "subject": "repo:someone/else:ref:refs/heads/main",
        }),
    )
    .await;
    let both = check(&env).await;
    let finding = both["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["kind"] == "unknown_credential")
        .unwrap_or_else(|| panic!("{both}"))
        .clone();
    let details = finding["details"].as_array().unwrap();
    assert_eq!(details.len(), 2, "{finding}");
    let federated = details.iter().find(|d| d["place"] == "federated").unwrap();
    assert!(
        federated["issuer"]
            .as_str()
            .unwrap()
            .contains("repo:someone/else"),
        "{finding}"
    );
    // The alert carries it to monitoring.
    let alert: String = sqlx::query_scalar(
        "SELECT annotations->>'summary' FROM alerts WHERE kind = 'unknown_credential' AND status = 'firing'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(alert.contains("federated identity credential"), "{alert}");
    sim.running.stop().await;
}

#[sqlx::test]
async fn a_tenant_that_allows_certificates_a_shorter_life_gets_a_shorter_certificate(pool: PgPool) {
    let sim = Sim::start(&default_scenario()).await;
    sim.put(
        &format!("/_sim/tenants/{TENANT}/policy"),
        serde_json::json!({ "max_certificate_lifetime_days": 90 }),
    )
    .await;
    let (env, _backup) = rotating_env(&pool, &sim, "1h", "lifetime = \"180d\"\n");
    let (pem, key) = pair(1, 10);
    certificate_only_contoso(&sim, &env, (&pem, &key)).await;
    let rotated = env.exec(&["rotate", "contoso"]).await;
    rotated.success();
    let (start, end): (chrono::DateTime<chrono::Utc>, chrono::DateTime<chrono::Utc>) =
        sqlx::query_as("SELECT start_at, end_at FROM credentials WHERE status = 'current'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!((end - start).num_days(), 90, "{start} .. {end}");
    // One refused certificate, thrown away; the learned limit is kept and audited.
    let discarded: i64 =
        sqlx::query_scalar("SELECT count(*) FROM credentials WHERE status = 'discarded'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(discarded, 1);
    let limit: Option<i32> =
        sqlx::query_scalar("SELECT secret_lifetime_limit_days FROM organizations")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(limit, Some(90));
    let audit = env.exec(&["audit", "contoso", "--output", "json"]).await;
    assert!(
        audit.stdout.contains("rotation.lifetime_limited"),
        "{audit:?}"
    );
    assert_eq!(sim.counters().await["add_key"][APP].as_u64(), Some(1));
    sim.running.stop().await;
}

#[sqlx::test]
async fn new_organizations_are_marked_for_a_certificate_by_configuration(pool: PgPool) {
    let sim = Sim::start(&default_scenario()).await;
    let env = TestEnv::with_extra(
        &pool,
        &crate::checks::config(
            &sim,
            "[rotation]\ncredential_for_new_organizations = \"certificate\"\n",
        ),
    );
    register_contoso(&env).await;
    let shown = env
        .exec(&["org", "show", "contoso", "--output", "json"])
        .await;
    let shown: serde_json::Value = serde_json::from_str(&shown.stdout).unwrap();
    assert_eq!(shown["settings"]["credential"], "certificate", "{shown}");
    // A certificate registered directly needs no marking.
    let (pem, key) = pair(1, 365);
    add_with_certificate(
        &env,
        "fabrikam",
        "11111111-2222-4333-8444-555555555555",
        (&pem, &key),
    )
    .await
    .success();
    let settings: serde_json::Value =
        sqlx::query_scalar("SELECT settings FROM organizations WHERE name = 'fabrikam'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(settings, serde_json::json!({}));
    // A value that is neither kind is a configuration error.
    env.write_config("[rotation]\ncredential_for_new_organizations = \"token\"\n");
    let bad = env.exec(&["config", "check"]).await;
    assert_ne!(bad.code, 0);
    assert!(
        bad.stderr
            .contains("rotation.credential_for_new_organizations"),
        "{bad:?}"
    );
    sim.running.stop().await;
}

#[sqlx::test]
async fn a_certificate_made_ahead_is_the_one_its_rotation_adds(pool: PgPool) {
    let sim = Sim::start(&default_scenario()).await;
    let (env, backup) = rotating_env(&pool, &sim, "1h", "verify_timeout = \"30s\"\n");
    // Thirty and a half days left: the rotation is due (30 days before expiry) in half a
    // day, within rotation.prepare_ahead (24 h).
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["soon.kodo-access.test".into()]).unwrap();
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(1);
    params.not_after = now + time::Duration::days(30) + time::Duration::hours(12);
    let (pem, key) = (params.self_signed(&key).unwrap().pem(), key.serialize_pem());
    certificate_only_contoso(&sim, &env, (&pem, &key)).await;
    check(&env).await;

    // The rotations job makes the next certificate, and starts no rotation.
    env.exec(&["job", "run", "rotations"]).await.success();
    let spares: Vec<(String, Option<uuid::Uuid>)> =
        sqlx::query_as("SELECT thumbprint, rotation_id FROM credentials WHERE status = 'pending'")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(spares.len(), 1, "{spares:?}");
    assert_eq!(spares[0].1, None);
    let rotations: i64 = sqlx::query_scalar("SELECT count(*) FROM rotations")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(rotations, 0);
    assert!(sim.counters().await["add_key"][APP].is_null());
    // A second run makes no second one.
    env.exec(&["job", "run", "rotations"]).await.success();
    let pending: i64 =
        sqlx::query_scalar("SELECT count(*) FROM credentials WHERE status = 'pending'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(pending, 1);

    // When the rotation comes, it adds that certificate.
    sqlx::query(
        "UPDATE credentials SET end_at = now() + interval '5 days' WHERE status = 'current'",
    )
    .execute(&pool)
    .await
    .unwrap();
    env.exec(&["rotate", "contoso"]).await.success();
    let current: String =
        sqlx::query_scalar("SELECT thumbprint FROM credentials WHERE status = 'current'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(current, spares[0].0);
    assert_eq!(sim.counters().await["add_key"][APP].as_u64(), Some(1));
    let delivered: serde_json::Value =
        serde_json::from_slice(&std::fs::read(backup.path().join("contoso.json")).unwrap())
            .unwrap();
    assert_eq!(delivered["thumbprint"], spares[0].0.as_str());
    let audit = env.exec(&["audit", "contoso", "--output", "json"]).await;
    assert!(audit.stdout.contains("made_ahead_at"), "{audit:?}");
    // The new certificate is far from due: nothing more is made.
    env.exec(&["job", "run", "rotations"]).await.success();
    let spares_left: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM credentials WHERE status = 'pending' AND rotation_id IS NULL",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(spares_left, 0);
    sim.running.stop().await;
}
