//! What the certificate tests share: key pairs with chosen dates, and an organization that
//! signs in with a certificate only.

use std::sync::Arc;

use kodo_access::microsoft::ClientCertificate;

use crate::sim_support::{APP, Sim, TENANT};
use crate::support::*;

/// A self-signed RSA-2048 certificate issued `issued_days_ago` with `days_left` to run, and
/// its key: (certificate PEM, key PEM).
pub fn pair(issued_days_ago: i64, days_left: i64) -> (String, String) {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).unwrap();
    let mut params =
        rcgen::CertificateParams::new(vec!["contoso.kodo-access.test".into()]).unwrap();
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(issued_days_ago);
    params.not_after = now + time::Duration::days(days_left);
    (params.self_signed(&key).unwrap().pem(), key.serialize_pem())
}

/// A fresh certificate as the client holds it.
pub fn generated() -> Arc<ClientCertificate> {
    let (pem, key) = pair(1, 365);
    Arc::new(ClientCertificate::new(pem.as_bytes(), key.as_bytes()).unwrap())
}

/// `[rotation]` with a file deliverer into `backup` and the given grace.
pub fn rotation_config(backup: &std::path::Path, grace: &str, more: &str) -> String {
    format!(
        "[rotation]\ngrace = \"{grace}\"\n{more}[[rotation.file]]\ndirectory = \"{}\"\nmode = \"0600\"\n",
        backup.display()
    )
}

/// A test environment on `sim` that rotates into a fresh backup-server directory with
/// `grace` and the further `[rotation]` keys `more`: (environment, that directory).
pub fn rotating_env(
    pool: &sqlx::PgPool,
    sim: &Sim,
    grace: &str,
    more: &str,
) -> (TestEnv, tempfile::TempDir) {
    let backup = tempfile::tempdir().unwrap();
    let env = TestEnv::with_extra(
        pool,
        &crate::checks::config(sim, &rotation_config(backup.path(), grace, more)),
    );
    (env, backup)
}

/// `org add NAME` for `tenant` with the scenario's app, signing in with the certificate
/// and key files `name.crt`/`name.key` written from `(pem, key)` into the environment.
pub async fn add_with_certificate(
    env: &TestEnv,
    name: &str,
    tenant: &str,
    (pem, key): (&str, &str),
) -> Outcome {
    let (certificate_file, key_file) = (
        env.path(&format!("{name}.crt")),
        env.path(&format!("{name}.key")),
    );
    write_file(&certificate_file, pem, 0o644);
    write_file(&key_file, key, 0o600);
    env.exec(&[
        "org",
        "add",
        "--name",
        name,
        "--tenant-id",
        tenant,
        "--client-id",
        APP,
        "--cloud",
        "sim",
        "--certificate-file",
        certificate_file.to_str().unwrap(),
        "--private-key-file",
        key_file.to_str().unwrap(),
    ])
    .await
}

/// contoso registered with `(pem, key)`, which is registered on its app; the scenario's
/// secret is removed from the app, so the app signs in with certificates only. Returns the
/// simulator's record of the certificate (`key_id`, `thumbprint`).
pub async fn certificate_only_contoso(
    sim: &Sim,
    env: &TestEnv,
    (pem, key): (&str, &str),
) -> serde_json::Value {
    let state = sim.state().await;
    for secret in state["tenants"][0]["apps"][0]["secrets"]
        .as_array()
        .unwrap()
    {
        sim.delete(&format!(
            "/_sim/tenants/{TENANT}/apps/{APP}/secrets/{}",
            secret["key_id"].as_str().unwrap()
        ))
        .await;
    }
    let registered = sim
        .post(
            &format!("/_sim/tenants/{TENANT}/apps/{APP}/certificates"),
            serde_json::json!({ "pem": pem }),
        )
        .await;
    add_with_certificate(env, "contoso", TENANT, (pem, key))
        .await
        .success();
    registered
}

/// contoso registered with the scenario's secret and checked on SharePoint too (where a
/// secret-based token is refused).
pub async fn secret_contoso_on_sharepoint(env: &TestEnv) {
    crate::sim_support::register_contoso(env).await;
    env.exec(&[
        "org",
        "set",
        "contoso",
        "--sharepoint-host",
        "contoso.sharepoint.com",
        "--resources",
        "graph,exchange,sharepoint",
    ])
    .await
    .success();
}

/// A check's result whose state is `state` and whose first finding says `said` with
/// Entra's AADSTS `code` in its details.
#[track_caller]
pub fn assert_refused(result: &serde_json::Value, state: &str, said: &str, code: u64) {
    assert_eq!(result["state"], state, "{result}");
    let finding = &result["findings"][0];
    assert!(
        finding["message"]
            .as_str()
            .unwrap_or_default()
            .contains(said),
        "{result}"
    );
    assert!(
        finding["details"]["codes"]
            .as_array()
            .is_some_and(|codes| codes.iter().any(|c| c.as_u64() == Some(code))),
        "{result}"
    );
}
