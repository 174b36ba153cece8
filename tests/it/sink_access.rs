//! Sinks that want authentication (issue 10 item 5): a real Alertmanager behind TLS that
//! requires a client certificate and basic auth, and a webhook that wants a bearer token.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlx::PgPool;

use crate::alertmanager::Alertmanager;
use crate::sim_support::{APP, Sim, TENANT, default_scenario, register_contoso};
use crate::support::*;

/// A CA, a server certificate for localhost signed by it, and a client certificate
/// (clientAuth) signed by it, written as PEM files into `dir`.
struct Pki {
    ca: std::path::PathBuf,
    server_certificate: std::path::PathBuf,
    server_key: std::path::PathBuf,
    client_certificate: std::path::PathBuf,
    client_key: std::path::PathBuf,
}

impl Pki {
    fn write(dir: &Path) -> Pki {
        use rcgen::{
            BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
            KeyPair, KeyUsagePurpose,
        };
        let ca_key = KeyPair::generate().unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(DnType::CommonName, "monitoring CA");
        ca.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_certificate = ca.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca, ca_key);
        let leaf = |names: Vec<String>, usage: ExtendedKeyUsagePurpose| {
            let key = KeyPair::generate().unwrap();
            let mut params = CertificateParams::new(names).unwrap();
            params.distinguished_name.push(DnType::CommonName, "leaf");
            params.extended_key_usages = vec![usage];
            params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
            (
                params.signed_by(&key, &issuer).unwrap().pem(),
                key.serialize_pem(),
            )
        };
        let (server_pem, server_key) = leaf(
            vec!["localhost".into(), "127.0.0.1".into()],
            ExtendedKeyUsagePurpose::ServerAuth,
        );
        let (client_pem, client_key) = leaf(
            vec!["kodo-access".into()],
            ExtendedKeyUsagePurpose::ClientAuth,
        );
        let pki = Pki {
            ca: dir.join("ca.pem"),
            server_certificate: dir.join("server.pem"),
            server_key: dir.join("server.key"),
            client_certificate: dir.join("client.pem"),
            client_key: dir.join("client.key"),
        };
        write_file(&pki.ca, &ca_certificate.pem(), 0o644);
        write_file(&pki.server_certificate, &server_pem, 0o644);
        write_file(&pki.server_key, &server_key, 0o600);
        write_file(&pki.client_certificate, &client_pem, 0o644);
        write_file(&pki.client_key, &client_key, 0o600);
        pki
    }

    /// A client that trusts the CA and presents the client certificate.
    fn client(&self, password: &str) -> reqwest::Client {
        let mut identity = std::fs::read(&self.client_certificate).unwrap();
        identity.extend(std::fs::read(&self.client_key).unwrap());
        let mut headers = reqwest::header::HeaderMap::new();
        use base64::Engine;
        let basic = base64::engine::general_purpose::STANDARD.encode(format!("kodo:{password}"));
        headers.insert(
            reqwest::header::AUTHORIZATION,
            format!("Basic {basic}").parse().unwrap(),
        );
        reqwest::Client::builder()
            .tls_certs_only(
                reqwest::Certificate::from_pem_bundle(&std::fs::read(&self.ca).unwrap()).unwrap(),
            )
            .identity(reqwest::Identity::from_pem(&identity).unwrap())
            .default_headers(headers)
            .build()
            .unwrap()
    }
}

#[sqlx::test]
async fn alerts_reach_an_alertmanager_that_wants_a_client_certificate_and_basic_auth(pool: PgPool) {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::write(dir.path());
    let password = "am-password-3f9c1e";
    let password_file = dir.path().join("am-password");
    write_file(&password_file, &format!("{password}\n"), 0o600);
    let web = format!(
        "tls_server_config:\n  cert_file: {}\n  key_file: {}\n  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: {}\nbasic_auth_users:\n  kodo: {}\n",
        pki.server_certificate.display(),
        pki.server_key.display(),
        pki.ca.display(),
        bcrypt::hash(password, 4).unwrap()
    );
    let alertmanager = Alertmanager::start_with(None, Some(web), pki.client(password)).await;
    let sim = Sim::start(&default_scenario()).await;
    let sink = |with_certificate: bool| {
        let certificate = if with_certificate {
            format!(
                ", certificate_file = \"{}\", key_file = \"{}\"",
                pki.client_certificate.display(),
                pki.client_key.display()
            )
        } else {
            String::new()
        };
        format!(
            "[alerts]\nmax_delivery_backoff = \"1s\"\n[[alerts.alertmanager]]\nname = \"am\"\nurl = \"{}\"\nbasic_auth = {{ username = \"kodo\", password_file = \"{}\" }}\ntls = {{ ca_file = \"{}\"{certificate} }}\n",
            alertmanager.url(),
            password_file.display(),
            pki.ca.display()
        )
    };
    // Without the client certificate, Alertmanager refuses the connection: nothing is
    // delivered, the alert waits in the outbox.
    let env = TestEnv::with_extra(&pool, &crate::checks::config(&sim, &sink(false)));
    register_contoso(&env).await;
    sim.post(
        &format!("/_sim/tenants/{TENANT}/apps/{APP}/consent/revoke"),
        serde_json::json!({"resource": "exchange"}),
    )
    .await;
    env.exec(&["check", "contoso"])
        .await
        .fails_with(3, "not healthy");
    let undelivered = || async {
        sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FROM alert_outbox WHERE delivered_at IS NULL AND attempts >= 1",
        )
        .fetch_one(&pool)
        .await
        .unwrap()
    };
    assert!(undelivered().await >= 1, "refused without the certificate");
    assert_eq!(alertmanager.active_names().await, []);

    // With it: delivered, and Alertmanager shows the alert.
    env.write_config(&crate::checks::config(&sim, &sink(true)));
    let checked = env.run(&["config", "check"]);
    assert!(
        checked
            .success()
            .stdout
            .contains("# alertmanager am: credentials and TLS files readable"),
        "{checked:?}"
    );
    assert!(!checked.stdout.contains(password) && !checked.stdout.contains("PRIVATE KEY"));
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let run = env.exec(&["job", "run", "deliver-alerts"]).await;
    assert!(run.success().stdout.contains("delivered"), "{run:?}");
    assert_eq!(undelivered().await, 0);
    assert!(
        alertmanager
            .active_names()
            .await
            .contains(&("contoso".into(), "KodoAccessConsentRevoked".into()))
    );
    sim.running.stop().await;
}

#[sqlx::test]
async fn a_rotation_webhook_gets_its_bearer_token_and_config_check_does_not_show_it(pool: PgPool) {
    let token = "bearer-token-5d1a7c";
    let seen: Arc<Mutex<Vec<Option<String>>>> = Arc::default();
    let record = seen.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/secrets", listener.local_addr().unwrap());
    let router = axum::Router::new().fallback(move |headers: axum::http::HeaderMap| {
        let record = record.clone();
        async move {
            let authorization = headers
                .get("authorization")
                .map(|value| value.to_str().unwrap().to_string());
            let accepted = authorization.as_deref() == Some(&format!("Bearer {token}"));
            record.lock().unwrap().push(authorization);
            if accepted {
                axum::http::StatusCode::OK
            } else {
                axum::http::StatusCode::UNAUTHORIZED
            }
        }
    });
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    let scenario = default_scenario().replace("expires_in_days = 200", "expires_in_days = 5");
    let sim = Sim::start(&scenario).await;
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("signing-key");
    write_file(&key_file, &"k".repeat(32), 0o600);
    let token_file = dir.path().join("token");
    write_file(&token_file, token, 0o600);
    let extra = format!(
        "[rotation]\ngrace = \"0s\"\nverify_timeout = \"10s\"\n[[rotation.webhook]]\nurl = \"{url}\"\nsecret_file = \"{}\"\nbearer = {{ token_file = \"{}\" }}\n",
        key_file.display(),
        token_file.display()
    );
    let env = TestEnv::with_extra(&pool, &crate::checks::config(&sim, &extra));
    let checked = env.run(&["config", "check"]);
    assert!(
        checked
            .success()
            .stdout
            .contains(&format!("<redacted: file {}>", token_file.display())),
        "config check names where the token comes from: {checked:?}"
    );
    assert!(!checked.stdout.contains(token), "{checked:?}");
    register_contoso(&env).await;
    env.exec(&["check", "contoso"]).await;
    let rotated = env.exec(&["rotate", "contoso"]).await;
    assert_eq!(rotated.code, 0, "{rotated:?}");
    assert_eq!(
        *seen.lock().unwrap(),
        [Some(format!("Bearer {token}"))],
        "one delivery, with the token"
    );
    // A token the receiver does not take: the delivery fails and says so.
    write_file(&token_file, "wrong", 0o600);
    let again = env.exec(&["rotate", "contoso"]).await;
    assert_ne!(again.code, 0, "{again:?}");
    assert!(again.stderr.contains("401"), "{again:?}");
    assert!(!again.stderr.contains("wrong") && !again.stdout.contains("wrong"));
    sim.running.stop().await;
}
