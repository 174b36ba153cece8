//! kodo-access's Microsoft client trusts the simulated cloud's HTTPS only through
//! configuration (`microsoft.ca_file`). MSAL for Python's fidelity check of the same
//! simulator is the simulator crate's own test (crates/simulator/tests/cli.rs).

use std::time::Duration;

use kodo_access::microsoft::{Resource, RetryPolicy};

use crate::sim_support::*;

const SCENARIO: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/config/scenarios/demo.toml");
const DEMO_SECRET: &str = "Con8Q~contoso-demo-secret-0000000000000";

#[tokio::test]
async fn kodo_access_trusts_the_simulator_ca_through_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    let scenario = kodo_simulator::load_scenario(std::path::Path::new(SCENARIO)).unwrap();
    let sim = kodo_simulator::start(kodo_simulator::SimulatorOptions {
        listen: "127.0.0.1:0".parse().unwrap(),
        scenario,
        tls_ca_out: Some(ca.clone()),
        fast_signing: false,
        presets: presets(),
    })
    .await
    .unwrap();
    let base = url::Url::parse(&sim.base_url).unwrap();
    assert!(
        sim.base_url.starts_with("https://localhost:"),
        "{}",
        sim.base_url
    );
    let settings = kodo_access::microsoft::ClientSettings {
        max_requests_in_flight: 64,
        connect_timeout: Duration::from_secs(5),
        request_timeout: Duration::from_secs(10),
        retry: RetryPolicy::NONE,
        ca_file: Some(ca),
    };
    let client = kodo_access::microsoft::MicrosoftClient::new(&settings).unwrap();
    let endpoints = kodo_access::microsoft::Endpoints {
        cloud: kodo_access::config::CloudSettings {
            authority: base.clone(),
            graph: base.clone(),
            exchange: base.clone(),
            sharepoint_suffix: "sharepoint.com".into(),
            graph_resource: url::Url::parse("https://graph.microsoft.com").unwrap(),
            exchange_resource: url::Url::parse("https://outlook.office365.com").unwrap(),
            sharepoint: Some(base),
        },
        tenant_id: kodo_access::domain::TenantId::parse(TENANT).unwrap(),
        client_id: kodo_access::domain::ClientId::parse(APP).unwrap(),
        sharepoint_host: None,
    };
    let token = client
        .token(
            &endpoints,
            &secrecy::SecretString::from(DEMO_SECRET),
            Resource::Graph,
        )
        .await
        .unwrap();
    assert_eq!(token.claims.tid.as_deref(), Some(TENANT));
    // Without the CA, TLS verification fails: the client does not trust just anything.
    let untrusting =
        kodo_access::microsoft::MicrosoftClient::new(&kodo_access::microsoft::ClientSettings {
            ca_file: None,
            ..settings
        })
        .unwrap();
    let error = untrusting
        .token(
            &endpoints,
            &secrecy::SecretString::from(DEMO_SECRET),
            Resource::Graph,
        )
        .await
        .unwrap_err();
    assert_eq!(
        (error.kind, error.http_status),
        (kodo_access::microsoft::TokenFailure::Transient, None)
    );
    sim.stop().await;
}
