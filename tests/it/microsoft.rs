//! The Microsoft client against the simulated cloud over real HTTP: tokens, claims,
//! every classified failure, Graph calls with paging, secrets added and removed,
//! SharePoint's refusal, and retries that honour Retry-After.

use std::time::Duration;

use kodo_access::microsoft::graph::SharePointProbe;
use kodo_access::microsoft::{GraphFailure, Resource, RetryPolicy, TokenFailure};
use reqwest::Method;
use secrecy::{ExposeSecret, SecretString};

use crate::sim_support::*;

fn secret(text: &str) -> SecretString {
    SecretString::from(text.to_string())
}

#[tokio::test]
async fn tokens_for_each_resource_carry_the_granted_roles() {
    let sim = Sim::start(&default_scenario()).await;
    let client = client(RetryPolicy::NONE);
    let endpoints = sim.endpoints(TENANT, APP);
    let graph = client
        .token(&endpoints, &secret(SECRET), Resource::Graph)
        .await
        .unwrap();
    assert_eq!(graph.claims.tid.as_deref(), Some(TENANT));
    assert_eq!(graph.claims.client_id(), Some(APP));
    assert_eq!(
        graph.claims.audience().as_deref(),
        Some("https://graph.microsoft.com")
    );
    assert!(!graph.claims.authenticated_with_certificate());
    // 39 backup permissions on Graph (TeamsApp.ReadWrite.All is no published app role, so
    // no tenant can grant it) plus Application.ReadWrite.OwnedBy.
    assert_eq!(graph.claims.roles().len(), 40, "{:?}", graph.claims.roles());
    assert!(
        graph
            .claims
            .roles()
            .iter()
            .any(|r| r == "Calendars.ReadWrite")
    );
    let exchange = client
        .token(&endpoints, &secret(SECRET), Resource::Exchange)
        .await
        .unwrap();
    assert_eq!(exchange.claims.roles(), ["full_access_as_app"]);
    let sharepoint = client
        .token(&endpoints, &secret(SECRET), Resource::SharePoint)
        .await
        .unwrap();
    assert_eq!(sharepoint.claims.roles().len(), 5);
    assert!(
        format!("{graph:?}").contains("claims") && !format!("{graph:?}").contains("eyJ"),
        "Debug must not print the token"
    );
    sim.running.stop().await;
}

#[tokio::test]
async fn revoked_consent_still_gets_a_token_but_without_roles() {
    let sim = Sim::start(&default_scenario()).await;
    let revoked = sim
        .post(
            &format!("/_sim/tenants/{TENANT}/apps/{APP}/consent/revoke"),
            serde_json::json!({"resource": "graph"}),
        )
        .await;
    assert_eq!(revoked["revoked"], 40);
    let client = client(RetryPolicy::NONE);
    let endpoints = sim.endpoints(TENANT, APP);
    let graph = client
        .token(&endpoints, &secret(SECRET), Resource::Graph)
        .await
        .unwrap();
    assert!(
        graph.claims.roles.is_none(),
        "no roles claim at all when consent is gone"
    );
    // The other resources keep theirs.
    let exchange = client
        .token(&endpoints, &secret(SECRET), Resource::Exchange)
        .await
        .unwrap();
    assert_eq!(exchange.claims.roles(), ["full_access_as_app"]);
    // And the real Graph call is refused.
    let error = client.probe_graph(&endpoints, &graph).await.unwrap_err();
    assert_eq!(error.kind, GraphFailure::Forbidden);
    assert_eq!(error.code.as_deref(), Some("Authorization_RequestDenied"));
    sim.running.stop().await;
}

#[tokio::test]
async fn every_token_failure_mode_is_classified() {
    let sim = Sim::start(&default_scenario()).await;
    let client = client(RetryPolicy::NONE);
    let endpoints = sim.endpoints(TENANT, APP);
    let kind =
        |result: Result<_, kodo_access::microsoft::TokenError>| result.map(|_| ()).unwrap_err();

    let wrong = kind(
        client
            .token(&endpoints, &secret("Wro8Q~not-the-secret"), Resource::Graph)
            .await,
    );
    assert_eq!(
        (wrong.kind, wrong.http_status, wrong.codes.clone()),
        (TokenFailure::SecretInvalid, Some(401), vec![7000215])
    );
    assert!(wrong.trace_id.is_some() && wrong.correlation_id.is_some());
    assert!(!wrong.to_string().contains(SECRET));

    let unknown_tenant = kind(
        client
            .token(
                &sim.endpoints("99999999-9999-4999-8999-999999999999", APP),
                &secret(SECRET),
                Resource::Graph,
            )
            .await,
    );
    assert_eq!(
        (unknown_tenant.kind, unknown_tenant.codes.clone()),
        (TokenFailure::TenantNotFound, vec![90002])
    );

    let unknown_app = kind(
        client
            .token(
                &sim.endpoints(TENANT, "11111111-2222-4333-8444-555555555555"),
                &secret(SECRET),
                Resource::Graph,
            )
            .await,
    );
    assert_eq!(
        (unknown_app.kind, unknown_app.codes.clone()),
        (TokenFailure::AppNotFound, vec![700016])
    );

    let mut other_host = sim.endpoints(TENANT, APP);
    other_host.sharepoint_host =
        Some(kodo_access::domain::SharePointHost::parse("someoneelse.sharepoint.com").unwrap());
    let resource = kind(
        client
            .token(&other_host, &secret(SECRET), Resource::SharePoint)
            .await,
    );
    assert_eq!(
        (resource.kind, resource.codes.clone()),
        (TokenFailure::ResourceUnavailable, vec![500011])
    );

    sim.post(
        &format!("/_sim/tenants/{TENANT}/apps/{APP}/disable"),
        serde_json::json!({}),
    )
    .await;
    let disabled = kind(
        client
            .token(&endpoints, &secret(SECRET), Resource::Graph)
            .await,
    );
    assert_eq!(
        (disabled.kind, disabled.codes.clone()),
        (TokenFailure::AppDisabled, vec![7000112])
    );
    sim.post(
        &format!("/_sim/tenants/{TENANT}/apps/{APP}/enable"),
        serde_json::json!({}),
    )
    .await;

    let state = sim.state().await;
    let key_id = state["tenants"][0]["apps"][0]["secrets"][0]["key_id"]
        .as_str()
        .unwrap()
        .to_string();
    sim.post(
        &format!("/_sim/tenants/{TENANT}/apps/{APP}/secrets/{key_id}/expire"),
        serde_json::json!({}),
    )
    .await;
    let expired = kind(
        client
            .token(&endpoints, &secret(SECRET), Resource::Graph)
            .await,
    );
    assert_eq!(
        (expired.kind, expired.codes.clone()),
        (TokenFailure::SecretExpired, vec![7000222])
    );

    sim.delete(&format!(
        "/_sim/tenants/{TENANT}/apps/{APP}/service-principal"
    ))
    .await;
    let no_principal = kind(
        client
            .token(&endpoints, &secret(SECRET), Resource::Graph)
            .await,
    );
    assert_eq!(
        (no_principal.kind, no_principal.codes.clone()),
        (TokenFailure::ServicePrincipalMissing, vec![7000229])
    );

    sim.delete(&format!("/_sim/tenants/{TENANT}")).await;
    let gone = kind(
        client
            .token(&endpoints, &secret(SECRET), Resource::Graph)
            .await,
    );
    assert_eq!(gone.kind, TokenFailure::TenantNotFound);
    sim.running.stop().await;
}

#[tokio::test]
async fn a_scope_without_default_is_a_configuration_error() {
    // The client always asks for {resource}/.default; a raw request shows what Entra says otherwise.
    let sim = Sim::start(&default_scenario()).await;
    let response = sim
        .http
        .post(sim.url(&format!("/{TENANT}/oauth2/v2.0/token")))
        .form(&[
            ("client_id", APP),
            ("client_secret", SECRET),
            ("grant_type", "client_credentials"),
            ("scope", "https://graph.microsoft.com/User.Read.All"),
        ])
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let body = response.text().await.unwrap();
    let error = kodo_access::microsoft::errors::classify_token_error(status, &body, None);
    assert_eq!(
        (status, error.kind, error.codes),
        (400, TokenFailure::Configuration, vec![1002012])
    );
    assert_eq!(error.error.as_deref(), Some("invalid_scope"));
    sim.running.stop().await;
}

#[tokio::test]
async fn graph_reads_the_application_principal_and_paged_assignments() {
    let sim = Sim::start(&default_scenario()).await;
    let client = client(RetryPolicy::NONE);
    let endpoints = sim.endpoints(TENANT, APP);
    let token = client
        .token(&endpoints, &secret(SECRET), Resource::Graph)
        .await
        .unwrap();

    let application = client.get_application(&endpoints, &token).await.unwrap();
    assert_eq!(application.app_id, APP);
    assert_eq!(application.password_credentials.len(), 1);
    let credential = &application.password_credentials[0];
    assert_eq!(credential.hint.as_deref(), Some("Con"));
    assert_eq!(credential.display_name.as_deref(), Some("by hand"));
    assert!(credential.end_date_time.unwrap() > chrono::Utc::now() + chrono::Duration::days(199));

    let principal = client
        .get_service_principal(&endpoints, &token, APP)
        .await
        .unwrap();
    assert_eq!(principal.account_enabled, Some(true));
    let before = sim.requests("graph appRoleAssignments").await;
    let assignments = client
        .list_app_role_assignments_paged(&endpoints, &token, &principal.id, 10)
        .await
        .unwrap();
    // 40 Graph + 1 Exchange + 5 SharePoint, in 5 pages of 10 followed by @odata.nextLink.
    assert_eq!(assignments.len(), 46);
    assert_eq!(sim.requests("graph appRoleAssignments").await - before, 5);
    let all = client
        .list_app_role_assignments(&endpoints, &token, &principal.id)
        .await
        .unwrap();
    assert_eq!(all.len(), 46);

    // Resource app roles resolve assignment ids to names, and are fetched once per tenant.
    let graph_roles = client
        .resource_app_roles(&endpoints, &token, Resource::Graph)
        .await
        .unwrap();
    let fetched = sim.requests("graph get servicePrincipal").await;
    let again = client
        .resource_app_roles(&endpoints, &token, Resource::Graph)
        .await
        .unwrap();
    assert_eq!(
        sim.requests("graph get servicePrincipal").await,
        fetched,
        "the second lookup is served from the cache"
    );
    assert_eq!(graph_roles.len(), again.len());
    let graph_principal = client
        .get_service_principal(&endpoints, &token, Resource::Graph.app_id())
        .await
        .unwrap();
    let names: Vec<&str> = all
        .iter()
        .filter(|a| a.resource_id == graph_principal.id)
        .filter_map(|a| {
            graph_roles
                .iter()
                .find(|r| r.id == a.app_role_id)
                .and_then(|r| r.value.as_deref())
        })
        .collect();
    assert_eq!(names.len(), 40);
    assert!(names.contains(&"Application.ReadWrite.OwnedBy"));

    client.probe_graph(&endpoints, &token).await.unwrap();

    // The app deleted after the token was issued: Graph says 404.
    sim.delete(&format!("/_sim/tenants/{TENANT}/apps/{APP}"))
        .await;
    let error = client
        .get_application(&endpoints, &token)
        .await
        .unwrap_err();
    assert!(
        matches!(
            error.kind,
            GraphFailure::NotFound | GraphFailure::Unauthorized
        ),
        "{error}"
    );
    sim.running.stop().await;
}

#[tokio::test]
async fn a_lost_add_password_answer_is_never_resent() {
    let sim = Sim::start(&default_scenario()).await;
    let client = client(fast_retry(4));
    let endpoints = sim.endpoints(TENANT, APP);
    let token = client
        .token(&endpoints, &secret(SECRET), Resource::Graph)
        .await
        .unwrap();
    let end = chrono::Utc::now() + chrono::Duration::days(180);
    // Microsoft creates the secret, the answer is cut on the way back: one request, an
    // error that says Microsoft may have acted, and the secret is on the app.
    sim.put(
        &format!("/_sim/tenants/{TENANT}/faults"),
        serde_json::json!({"lost_answer_rate": 1.0}),
    )
    .await;
    let lost = client
        .add_password(&endpoints, &token, "kodo-access rotation 2", end)
        .await
        .unwrap_err();
    assert!(lost.may_have_acted(), "{lost}");
    assert_eq!(sim.counters().await["add_password"][APP], 1);
    let application = client.get_application(&endpoints, &token).await.unwrap();
    assert!(
        application
            .password_credentials
            .iter()
            .any(|credential| credential.display_name.as_deref() == Some("kodo-access rotation 2"))
    );
    sim.running.stop().await;
}

#[tokio::test]
async fn add_and_remove_password_with_propagation_delay() {
    let sim = Sim::start(&default_scenario()).await;
    sim.put(
        &format!("/_sim/tenants/{TENANT}/faults"),
        serde_json::json!({"propagation_delay_secs": 2}),
    )
    .await;
    let client = client(RetryPolicy::NONE);
    let endpoints = sim.endpoints(TENANT, APP);
    let token = client
        .token(&endpoints, &secret(SECRET), Resource::Graph)
        .await
        .unwrap();
    let end = chrono::Utc::now() + chrono::Duration::days(180);
    let created = client
        .add_password(&endpoints, &token, "kodo-access rotation 1", end)
        .await
        .unwrap();
    assert_eq!(
        created.display_name.as_deref(),
        Some("kodo-access rotation 1")
    );
    let text = created.secret_text.expose_secret().to_string();
    assert!(
        text.len() >= 16 && text.contains("8Q~"),
        "secret text in Entra's shape"
    );
    assert_eq!(created.hint.as_deref(), Some(&text[..3]));
    assert!(
        !format!("{created:?}").contains(&text),
        "Debug must not print the secret"
    );

    // Refused until Microsoft has propagated it, then accepted.
    let early = client
        .token(&endpoints, &created.secret_text, Resource::Graph)
        .await
        .unwrap_err();
    assert_eq!(early.kind, TokenFailure::SecretInvalid);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    client
        .token(&endpoints, &created.secret_text, Resource::Graph)
        .await
        .unwrap();

    // The secret text is never readable again: the application shows only its hint.
    let application = client.get_application(&endpoints, &token).await.unwrap();
    assert_eq!(application.password_credentials.len(), 2);
    let body = sim
        .http
        .get(sim.url(&format!("/v1.0/applications(appId='{APP}')")))
        .bearer_auth(bearer(&client, &sim).await)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        !body.contains(&text) && body.contains("\"secretText\":null"),
        "{body}"
    );

    client
        .remove_password(&endpoints, &token, created.key_id)
        .await
        .unwrap();
    let application = client.get_application(&endpoints, &token).await.unwrap();
    assert_eq!(application.password_credentials.len(), 1);
    let counters = sim.counters().await;
    assert_eq!(counters["add_password"][APP], 1);
    assert_eq!(counters["remove_password"][APP], 1);
    // Removing it again (as after a lost answer) is success: the key is gone.
    let again = client
        .remove_password(&endpoints, &token, created.key_id)
        .await
        .unwrap();
    assert_eq!(again, kodo_access::microsoft::Removal::AlreadyGone);
    assert_eq!(sim.counters().await["remove_password"][APP], 1);
    sim.running.stop().await;
}

async fn bearer(client: &kodo_access::microsoft::MicrosoftClient, sim: &Sim) -> String {
    // A raw bearer for raw requests: read from a fresh token request.
    let response: serde_json::Value = sim
        .http
        .post(sim.url(&format!("/{TENANT}/oauth2/v2.0/token")))
        .form(&[
            ("client_id", APP),
            ("client_secret", SECRET),
            ("grant_type", "client_credentials"),
            ("scope", "https://graph.microsoft.com/.default"),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let _ = client;
    response["access_token"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn add_password_refusals() {
    let sim = Sim::start(&default_scenario()).await;
    let client = client(RetryPolicy::NONE);
    let endpoints = sim.endpoints(TENANT, APP);
    let end = chrono::Utc::now() + chrono::Duration::days(180);

    sim.put(
        &format!("/_sim/tenants/{TENANT}/apps/{APP}/ownership"),
        serde_json::json!({"owns_itself": false}),
    )
    .await;
    let token = client
        .token(&endpoints, &secret(SECRET), Resource::Graph)
        .await
        .unwrap();
    let forbidden = client
        .add_password(&endpoints, &token, "r", end)
        .await
        .unwrap_err();
    assert_eq!(
        (forbidden.kind, forbidden.code.as_deref()),
        (GraphFailure::Forbidden, Some("Authorization_RequestDenied"))
    );
    sim.put(
        &format!("/_sim/tenants/{TENANT}/apps/{APP}/ownership"),
        serde_json::json!({"owns_itself": true}),
    )
    .await;

    sim.put(
        &format!("/_sim/tenants/{TENANT}/policy"),
        serde_json::json!({"max_lifetime_days": 90}),
    )
    .await;
    let too_long = client
        .add_password(&endpoints, &token, "r", end)
        .await
        .unwrap_err();
    assert_eq!(too_long.kind, GraphFailure::LifetimeTooLong);
    client
        .add_password(
            &endpoints,
            &token,
            "r",
            chrono::Utc::now() + chrono::Duration::days(60),
        )
        .await
        .unwrap();

    sim.put(
        &format!("/_sim/tenants/{TENANT}/policy"),
        serde_json::json!({"secrets_blocked": true}),
    )
    .await;
    let blocked = client
        .add_password(&endpoints, &token, "r", end)
        .await
        .unwrap_err();
    assert_eq!(blocked.kind, GraphFailure::SecretsNotAllowed);

    // Without OwnedBy at all.
    sim.put(
        &format!("/_sim/tenants/{TENANT}/policy"),
        serde_json::json!({}),
    )
    .await;
    sim.post(
        &format!("/_sim/tenants/{TENANT}/apps/{APP}/consent/revoke"),
        serde_json::json!({"permissions": ["graph:Application.ReadWrite.OwnedBy"]}),
    )
    .await;
    let token = client
        .token(&endpoints, &secret(SECRET), Resource::Graph)
        .await
        .unwrap();
    assert_eq!(
        client
            .add_password(&endpoints, &token, "r", end)
            .await
            .unwrap_err()
            .kind,
        GraphFailure::Forbidden
    );
    assert_eq!(
        sim.counters().await["add_password"][APP],
        1,
        "only the allowed call created a secret"
    );
    sim.running.stop().await;
}

#[tokio::test]
async fn sharepoint_refuses_a_secret_based_token() {
    let sim = Sim::start(&default_scenario()).await;
    let client = client(RetryPolicy::NONE);
    let endpoints = sim.endpoints(TENANT, APP);
    let token = client
        .token(&endpoints, &secret(SECRET), Resource::SharePoint)
        .await
        .unwrap();
    match client.probe_sharepoint(&endpoints, &token).await.unwrap() {
        SharePointProbe::CertificateRequired { status, detail } => {
            assert_eq!(status, 401);
            assert!(detail.contains("Unsupported app only token"), "{detail}");
        }
        other => panic!("expected CertificateRequired, got {other:?}"),
    }
    sim.running.stop().await;
}

#[tokio::test]
async fn throttling_waits_for_retry_after_before_sending_again() {
    let sim = Sim::start(&default_scenario()).await;
    // One request per 2-second window for this tenant.
    sim.put(
        &format!("/_sim/tenants/{TENANT}/faults"),
        serde_json::json!({"request_budget": 1, "retry_after_secs": 2}),
    )
    .await;
    let client = client(fast_retry(4));
    let endpoints = sim.endpoints(TENANT, APP);
    client
        .token(&endpoints, &secret(SECRET), Resource::Graph)
        .await
        .unwrap();
    // The second request is throttled; the client waits as told and succeeds.
    client
        .token(&endpoints, &secret(SECRET), Resource::Graph)
        .await
        .unwrap();
    let counters = sim.counters().await;
    let recent: Vec<&serde_json::Value> = counters["recent"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["tenant"] == TENANT)
        .collect();
    let statuses: Vec<u64> = recent
        .iter()
        .map(|r| r["status"].as_u64().unwrap())
        .collect();
    assert_eq!(statuses, [200, 429, 200], "{recent:?}");
    let throttled_at = recent[1]["at_ms"].as_i64().unwrap();
    let retried_at = recent[2]["at_ms"].as_i64().unwrap();
    // Retry-After was the rest of the window, at least 1 s: nothing was sent before it passed.
    let window_start = recent[0]["at_ms"].as_i64().unwrap();
    let announced_ms = ((window_start + 2000 - throttled_at) as f64 / 1000.0)
        .ceil()
        .max(1.0) as i64
        * 1000;
    assert!(
        retried_at - throttled_at >= announced_ms,
        "retried {} ms after a 429 that said {} ms",
        retried_at - throttled_at,
        announced_ms
    );
    sim.running.stop().await;
}

#[tokio::test]
async fn transient_failures_are_retried_a_bounded_number_of_times_and_4xx_never() {
    let sim = Sim::start(&default_scenario()).await;
    sim.put(
        &format!("/_sim/tenants/{TENANT}/faults"),
        serde_json::json!({"error_rate": 1.0, "retry_after_secs": 0}),
    )
    .await;
    let client = client(fast_retry(3));
    let endpoints = sim.endpoints(TENANT, APP);
    let error = client
        .token(&endpoints, &secret(SECRET), Resource::Graph)
        .await
        .unwrap_err();
    assert_eq!(
        (error.kind, error.http_status),
        (TokenFailure::Transient, Some(503))
    );
    assert_eq!(
        sim.requests("identity fault").await,
        3,
        "three attempts in all"
    );

    sim.put(
        &format!("/_sim/tenants/{TENANT}/faults"),
        serde_json::json!({}),
    )
    .await;
    sim.post("/_sim/counters/reset", serde_json::json!({}))
        .await;
    let error = client
        .token(&endpoints, &secret("Bad8Q~wrong"), Resource::Graph)
        .await
        .unwrap_err();
    assert_eq!(error.kind, TokenFailure::SecretInvalid);
    assert_eq!(
        sim.requests("token").await,
        1,
        "a wrong secret is not retried"
    );
    sim.running.stop().await;
}

#[tokio::test]
async fn the_admin_api_answers_bad_input_with_clear_errors() {
    let sim = Sim::start(&default_scenario()).await;
    let cases: Vec<(Method, String, serde_json::Value, u16, &str)> = vec![
        (
            Method::POST,
            "/_sim/tenants".into(),
            serde_json::json!({"id": "nope"}),
            400,
            "invalid request body",
        ),
        (
            Method::POST,
            "/_sim/tenants".into(),
            serde_json::json!({"id": TENANT}),
            400,
            "already exists",
        ),
        (
            Method::PUT,
            "/_sim/faults".into(),
            serde_json::json!({"error_rate": 7}),
            400,
            "error_rate must be between 0 and 1",
        ),
        (
            Method::PUT,
            format!("/_sim/tenants/{TENANT}/faults"),
            serde_json::json!({"latency": 5}),
            400,
            "unknown field `latency`",
        ),
        (
            Method::DELETE,
            "/_sim/tenants/not-a-guid".into(),
            serde_json::Value::Null,
            400,
            "is not a GUID",
        ),
        (
            Method::DELETE,
            "/_sim/tenants/99999999-9999-4999-8999-999999999999".into(),
            serde_json::Value::Null,
            404,
            "no tenant",
        ),
        (
            Method::POST,
            format!("/_sim/tenants/{TENANT}/apps/{APP}/consent/revoke"),
            serde_json::json!({"permissions": ["graph:No.Such.Permission"]}),
            400,
            "defines no app role",
        ),
        (
            Method::POST,
            format!("/_sim/tenants/{TENANT}/apps/{APP}/consent/revoke"),
            serde_json::json!({"resource": "aad"}),
            400,
            "unknown resource",
        ),
        (
            Method::POST,
            format!("/_sim/tenants/{TENANT}/apps/{APP}/secrets"),
            serde_json::json!({"value": "x y"}),
            400,
            "no whitespace",
        ),
    ];
    for (method, path, body, status, message) in cases {
        let (got, value) = sim.admin(method.clone(), &path, body).await;
        assert_eq!(got, status, "{method} {path}: {value}");
        assert!(
            value["error"]
                .as_str()
                .unwrap_or_default()
                .contains(message),
            "{method} {path}: {value}"
        );
    }
    sim.running.stop().await;
}
