//! The simulated cloud in-process, a client pointed at it through a configured cloud
//! (exactly as production code is pointed at Microsoft), and admin-API helpers.

use std::time::Duration;

use kodo_access::config::CloudSettings;
use kodo_access::domain::{ClientId, SharePointHost, TenantId};
use kodo_access::microsoft::{Endpoints, MicrosoftClient, RetryPolicy};
use kodo_simulator::{self as simulator, RunningSimulator, SimulatorOptions, model::Scenario};
use url::Url;

pub const TENANT: &str = "6f1c3f2e-4c55-4a8b-9d2e-0b7c1a2d3e4f";
pub const APP: &str = "0d9a8b7c-6e5f-4a3b-8c2d-1e0f9a8b7c6d";
pub const SECRET: &str = "Con8Q~contoso-test-secret-000000000000000";

pub struct Sim {
    pub running: RunningSimulator,
    pub http: reqwest::Client,
}

/// One tenant with one fully consented app and one valid secret, plus `extra` TOML.
pub fn default_scenario() -> String {
    format!(
        r#"
[[tenants]]
id = "{TENANT}"
domain = "contoso.onmicrosoft.com"
sharepoint_host = "contoso.sharepoint.com"
[[tenants.apps]]
app_id = "{APP}"
permissions = "all"
[[tenants.apps.secrets]]
value = "{SECRET}"
display_name = "by hand"
expires_in_days = 200
"#
    )
}

/// The simulator's presets ("all", "backup") name what the shipped manifest requires; the
/// simulator resolves the names to Microsoft's ids from its own catalogue.
pub fn presets() -> kodo_simulator::catalogue::PresetNames {
    kodo_simulator::catalogue::PresetNames::from_permissions_toml(
        kodo_access::config::DEFAULT_MANIFEST,
    )
    .unwrap()
}

impl Sim {
    pub async fn start(scenario_toml: &str) -> Sim {
        let scenario = Scenario::parse("scenario.toml", scenario_toml).expect("valid scenario");
        let running = simulator::start(SimulatorOptions {
            listen: "127.0.0.1:0".parse().unwrap(),
            scenario,
            tls_ca_out: None,
            fast_signing: false,
            presets: presets(),
        })
        .await
        .expect("simulator starts");
        Sim {
            running,
            http: reqwest::Client::new(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.running.base_url)
    }

    /// The cloud as an operator would configure it to point at this simulator.
    pub fn cloud(&self) -> CloudSettings {
        let base = Url::parse(&self.running.base_url).unwrap();
        CloudSettings {
            authority: base.clone(),
            graph: base.clone(),
            exchange: base.clone(),
            sharepoint_suffix: "sharepoint.com".into(),
            graph_resource: Url::parse("https://graph.microsoft.com").unwrap(),
            exchange_resource: Url::parse("https://outlook.office365.com").unwrap(),
            sharepoint: Some(base),
        }
    }

    pub fn endpoints(&self, tenant: &str, app: &str) -> Endpoints {
        Endpoints {
            cloud: self.cloud(),
            tenant_id: TenantId::parse(tenant).unwrap(),
            client_id: ClientId::parse(app).unwrap(),
            sharepoint_host: Some(SharePointHost::parse("contoso.sharepoint.com").unwrap()),
        }
    }

    pub async fn admin(
        &self,
        method: reqwest::Method,
        path: &str,
        body: serde_json::Value,
    ) -> (u16, serde_json::Value) {
        let response = self
            .http
            .request(method, self.url(path))
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (
            status,
            response.json().await.unwrap_or(serde_json::Value::Null),
        )
    }

    pub async fn post(&self, path: &str, body: serde_json::Value) -> serde_json::Value {
        let (status, value) = self.admin(reqwest::Method::POST, path, body).await;
        assert!(
            (200..300).contains(&status),
            "POST {path}: {status} {value}"
        );
        value
    }

    pub async fn put(&self, path: &str, body: serde_json::Value) -> serde_json::Value {
        let (status, value) = self.admin(reqwest::Method::PUT, path, body).await;
        assert!((200..300).contains(&status), "PUT {path}: {status} {value}");
        value
    }

    pub async fn delete(&self, path: &str) -> serde_json::Value {
        let (status, value) = self
            .admin(reqwest::Method::DELETE, path, serde_json::Value::Null)
            .await;
        assert!(
            (200..300).contains(&status),
            "DELETE {path}: {status} {value}"
        );
        value
    }

    /// What the cloud holds (`GET /_sim/state`; never secret values).
    pub async fn state(&self) -> serde_json::Value {
        self.http
            .get(self.url("/_sim/state"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    pub async fn counters(&self) -> serde_json::Value {
        self.http
            .get(self.url("/_sim/counters"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// How many requests the cloud received whose counter key starts with `endpoint`.
    pub async fn requests(&self, endpoint: &str) -> u64 {
        let counters = self.counters().await;
        counters["requests"]
            .as_object()
            .unwrap()
            .iter()
            .filter(|(key, _)| key.starts_with(endpoint))
            .map(|(_, count)| count.as_u64().unwrap())
            .sum()
    }
}

pub fn client(retry: RetryPolicy) -> MicrosoftClient {
    MicrosoftClient::new(&kodo_access::microsoft::ClientSettings {
        max_requests_in_flight: 64,
        connect_timeout: Duration::from_secs(5),
        request_timeout: Duration::from_secs(10),
        retry,
        ca_file: None,
    })
    .unwrap()
}

pub fn fast_retry(attempts: u32) -> RetryPolicy {
    RetryPolicy {
        max_attempts: attempts,
        max_elapsed: Duration::from_secs(30),
        min_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(50),
    }
}

/// Registers the scenario's organization as `contoso` on the simulated cloud.
pub async fn register_contoso(env: &crate::support::TestEnv) {
    env.exec_with_stdin(
        &[
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
        ],
        SECRET,
    )
    .await
    .success();
}
