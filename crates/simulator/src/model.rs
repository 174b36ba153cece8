//! The simulated cloud's state: tenants, applications with their secrets, service
//! principals and their app-role assignments, policies, faults and counters; and the
//! scenario file that seeds them. Pure data and rules; the HTTP faces are elsewhere.
//!
//! Secrets live here in memory in the clear, as they do inside Entra ID; they leave only
//! once, in the `addPassword` answer, and never through the admin API.

use std::collections::{BTreeMap, VecDeque};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub use crate::catalogue::{Catalogue, RoleDefinition};
use crate::resource::Resource;

#[derive(Debug, Clone)]
pub struct Credential {
    pub key_id: Uuid,
    pub display_name: Option<String>,
    pub secret: String,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    /// Before this (real) time the secret is refused: Microsoft's propagation delay.
    pub usable_from: DateTime<Utc>,
}

impl Credential {
    pub fn hint(&self) -> String {
        self.secret.chars().take(3).collect()
    }
}

/// A certificate registered on an application (`keyCredentials`, type
/// `AsymmetricX509Cert`, usage `Verify`): what a client assertion is checked against.
#[derive(Debug, Clone)]
pub struct KeyCredential {
    pub key_id: Uuid,
    pub display_name: Option<String>,
    /// The certificate, DER.
    pub der: Vec<u8>,
    /// SHA-1 of the DER: the `customKeyIdentifier` and the `x5t` header.
    pub sha1: [u8; 20],
    /// SHA-256 of the DER: the `x5t#S256` header.
    pub sha256: [u8; 32],
    /// The RSA public key (PKCS#1 DER) the assertion's signature is verified with.
    pub public_key: Vec<u8>,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    /// Before this (real) time the certificate is unknown: Microsoft's propagation delay.
    pub usable_from: DateTime<Utc>,
}

impl KeyCredential {
    /// Reads a certificate (PEM or DER) as Entra does when it is added: its dates are the
    /// certificate's unless given.
    pub fn from_certificate(
        certificate: &[u8],
        display_name: Option<String>,
        key_id: Option<Uuid>,
    ) -> Result<KeyCredential, String> {
        use sha1::Digest as _;
        let der = if certificate.starts_with(b"-----BEGIN") {
            let (_, pem) = x509_parser::pem::parse_x509_pem(certificate)
                .map_err(|error| format!("not a PEM certificate: {error}"))?;
            pem.contents
        } else {
            certificate.to_vec()
        };
        let (_, parsed) = x509_parser::parse_x509_certificate(&der)
            .map_err(|error| format!("not an X.509 certificate: {error}"))?;
        if !matches!(
            parsed.public_key().parsed(),
            Ok(x509_parser::public_key::PublicKey::RSA(_))
        ) {
            return Err("only RSA certificates are accepted for keyCredentials".into());
        }
        let time = |t: x509_parser::time::ASN1Time| {
            DateTime::from_timestamp(t.timestamp(), 0).unwrap_or_default()
        };
        let start = time(parsed.validity().not_before);
        let end = time(parsed.validity().not_after);
        let public_key = parsed.public_key().subject_public_key.data.to_vec();
        Ok(KeyCredential {
            key_id: key_id.unwrap_or_else(Uuid::new_v4),
            display_name,
            sha1: sha1::Sha1::digest(&der).into(),
            sha256: sha2::Sha256::digest(&der).into(),
            der,
            public_key,
            start,
            end,
            usable_from: Utc::now(),
        })
    }

    /// The thumbprint as Entra prints it (upper-case hex of SHA-1).
    pub fn thumbprint(&self) -> String {
        self.sha1.iter().map(|b| format!("{b:02X}")).collect()
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Assignment {
    pub id: String,
    pub resource: Resource,
    pub app_role_id: Uuid,
    pub created: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub struct ServicePrincipal {
    pub object_id: Uuid,
    pub account_enabled: bool,
    pub assignments: Vec<Assignment>,
    /// The service principal's own secrets and certificates (`servicePrincipals/{id}/
    /// addPassword`, or planted by an attacker): listed, as Graph lists them.
    pub credentials: Vec<Credential>,
    pub key_credentials: Vec<KeyCredential>,
}

/// A federated identity credential of an application: Entra accepts tokens of `issuer`
/// for `subject` as the app's sign-in.
#[derive(Debug, Clone)]
pub struct FederatedCredential {
    pub id: Uuid,
    pub name: String,
    pub issuer: String,
    pub subject: String,
}

#[derive(Debug, Clone)]
pub struct Application {
    pub object_id: Uuid,
    pub app_id: Uuid,
    pub display_name: String,
    /// Whether the app's service principal owns the application object, which
    /// `Application.ReadWrite.OwnedBy` needs for the app to manage its own secrets.
    pub owns_itself: bool,
    pub credentials: Vec<Credential>,
    pub key_credentials: Vec<KeyCredential>,
    pub federated_credentials: Vec<FederatedCredential>,
    pub service_principal: Option<ServicePrincipal>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// The tenant's app-management policy forbids password credentials.
    #[serde(default)]
    pub secrets_blocked: bool,
    /// The longest lifetime the policy allows for a new secret, in days.
    #[serde(default)]
    pub max_lifetime_days: Option<u32>,
    /// The longest validity the policy allows for a new certificate
    /// (`asymmetricKeyLifetime`), in days.
    #[serde(default)]
    pub max_certificate_lifetime_days: Option<u32>,
    /// A Conditional Access policy for workload identities blocks the tenant's apps
    /// (token requests answer AADSTS53003 once the client has authenticated).
    #[serde(default)]
    pub conditional_access_blocks: bool,
}

/// Ways to make the cloud misbehave, per tenant or for every tenant.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Faults {
    /// Added to every answer.
    #[serde(default)]
    pub latency_ms: u64,
    /// Fraction (0 to 1) of requests answered with a 503.
    #[serde(default)]
    pub error_rate: f64,
    /// At most this many requests per window of `retry_after_secs`; past it, 429 with
    /// `Retry-After` set to the rest of the window (as Graph and Entra throttle).
    #[serde(default)]
    pub request_budget: Option<u64>,
    /// The throttling window, and the Retry-After of 503 answers, in seconds.
    #[serde(default = "default_retry_after")]
    pub retry_after_secs: u64,
    /// How long a secret created by addPassword is refused (7000215) before it works.
    #[serde(default)]
    pub propagation_delay_secs: u64,
    /// Moves this tenant's clock (for secret expiry): positive ages secrets.
    #[serde(default)]
    pub clock_offset_secs: i64,
    /// Fraction (0 to 1) of Graph writes (addPassword, removePassword) that are carried out
    /// and whose answer is then lost on the way back, as when a connection is cut: Microsoft
    /// acted, the caller never learns it.
    #[serde(default)]
    pub lost_answer_rate: f64,
    /// How a lost answer is lost: 0 cuts the connection after the status line (the caller
    /// sees a broken body); more holds the answer this many milliseconds (past the
    /// caller's timeout) before sending it.
    #[serde(default)]
    pub lost_answer_delay_ms: u64,
}

fn default_retry_after() -> u64 {
    1
}

impl Default for Faults {
    fn default() -> Self {
        Faults {
            latency_ms: 0,
            error_rate: 0.0,
            request_budget: None,
            retry_after_secs: default_retry_after(),
            propagation_delay_secs: 0,
            clock_offset_secs: 0,
            lost_answer_rate: 0.0,
            lost_answer_delay_ms: 0,
        }
    }
}

/// A throttling window: requests counted since it began.
#[derive(Debug, Clone, Default)]
pub struct BudgetWindow {
    pub started: Option<std::time::Instant>,
    pub used: u64,
}

impl BudgetWindow {
    /// Counts a request; returns the wait to announce when the budget is spent.
    pub fn take(
        &mut self,
        budget: u64,
        window: std::time::Duration,
    ) -> Option<std::time::Duration> {
        let now = std::time::Instant::now();
        match self.started {
            Some(started) if now.duration_since(started) < window => {}
            _ => {
                self.started = Some(now);
                self.used = 0;
            }
        }
        if self.used >= budget {
            let elapsed = now.duration_since(self.started.expect("set above"));
            return Some(window.saturating_sub(elapsed));
        }
        self.used += 1;
        None
    }
}

impl Faults {
    pub fn validate(&self) -> Result<(), String> {
        if !(0.0..=1.0).contains(&self.error_rate) || self.error_rate.is_nan() {
            return Err(format!(
                "error_rate must be between 0 and 1, not {}",
                self.error_rate
            ));
        }
        if !(0.0..=1.0).contains(&self.lost_answer_rate) || self.lost_answer_rate.is_nan() {
            return Err(format!(
                "lost_answer_rate must be between 0 and 1, not {}",
                self.lost_answer_rate
            ));
        }
        if self.latency_ms > 60_000 {
            return Err("latency_ms must be at most 60000".into());
        }
        if self.lost_answer_delay_ms > 600_000 {
            return Err("lost_answer_delay_ms must be at most 600000".into());
        }
        Ok(())
    }
}

#[derive(Debug, Clone)]
pub struct Tenant {
    pub id: Uuid,
    pub domain: String,
    pub sharepoint_host: Option<String>,
    pub applications: Vec<Application>,
    pub policy: Policy,
    pub faults: Faults,
    /// Requests counted against `faults.request_budget`.
    pub budget: BudgetWindow,
}

impl Tenant {
    /// The tenant's clock: real time plus its offset.
    pub fn now(&self) -> DateTime<Utc> {
        Utc::now() + chrono::Duration::seconds(self.faults.clock_offset_secs)
    }

    pub fn application(&self, app_id: Uuid) -> Option<&Application> {
        self.applications.iter().find(|app| app.app_id == app_id)
    }

    pub fn application_mut(&mut self, app_id: Uuid) -> Option<&mut Application> {
        self.applications
            .iter_mut()
            .find(|app| app.app_id == app_id)
    }

    /// The object id of a resource's service principal in this tenant (stable).
    pub fn resource_principal_id(&self, resource: Resource) -> Uuid {
        Uuid::new_v5(&self.id, resource.app_id().as_bytes())
    }
}

/// One recorded request, for tests and benchmarks.
#[derive(Debug, Clone, Serialize)]
pub struct RequestRecord {
    pub at_ms: i64,
    pub endpoint: String,
    pub tenant: Option<Uuid>,
    pub status: u16,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Counters {
    /// "endpoint tenant" -> count.
    pub requests: BTreeMap<String, u64>,
    /// application appId -> count.
    pub add_password: BTreeMap<Uuid, u64>,
    pub remove_password: BTreeMap<Uuid, u64>,
    /// Key credentials changed by addKey, removeKey or PATCH keyCredentials.
    pub add_key: BTreeMap<Uuid, u64>,
    pub remove_key: BTreeMap<Uuid, u64>,
    pub patch_keys: BTreeMap<Uuid, u64>,
    pub total: u64,
    /// The latest requests, oldest first (bounded).
    pub recent: VecDeque<RequestRecord>,
}

const RECENT_LIMIT: usize = 2000;

impl Counters {
    pub fn record(&mut self, endpoint: &str, tenant: Option<Uuid>, status: u16) {
        let key = match tenant {
            Some(tenant) => format!("{endpoint} {tenant}"),
            None => endpoint.to_string(),
        };
        *self.requests.entry(key).or_default() += 1;
        self.total += 1;
        if self.recent.len() == RECENT_LIMIT {
            self.recent.pop_front();
        }
        self.recent.push_back(RequestRecord {
            at_ms: Utc::now().timestamp_millis(),
            endpoint: endpoint.to_string(),
            tenant,
            status,
        });
    }
}

/// Everything the simulated cloud knows.
#[derive(Debug)]
pub struct World {
    pub tenants: BTreeMap<Uuid, Tenant>,
    pub faults: Faults,
    pub counters: Counters,
    pub catalogue: Catalogue,
    /// Requests counted against the global `faults.request_budget`.
    pub global_budget: BudgetWindow,
}

impl World {
    pub fn new(catalogue: Catalogue) -> World {
        World {
            tenants: BTreeMap::new(),
            faults: Faults::default(),
            counters: Counters::default(),
            catalogue,
            global_budget: BudgetWindow::default(),
        }
    }

    /// A tenant by GUID or verified domain, as the token endpoint's path names it.
    pub fn find_tenant(&self, name: &str) -> Option<&Tenant> {
        match Uuid::try_parse(name) {
            Ok(id) => self.tenants.get(&id),
            Err(_) => self
                .tenants
                .values()
                .find(|tenant| tenant.domain.eq_ignore_ascii_case(name)),
        }
    }

    pub fn add_tenant(&mut self, spec: TenantSpec) -> Result<Uuid, String> {
        let tenant = spec.build(&self.catalogue)?;
        if self.tenants.contains_key(&tenant.id) {
            return Err(format!("tenant {} already exists", tenant.id));
        }
        let id = tenant.id;
        self.tenants.insert(id, tenant);
        Ok(id)
    }

    /// The faults in force for a tenant: its own where set, else the global ones.
    pub fn faults_for(&self, tenant: Option<Uuid>) -> Faults {
        tenant
            .and_then(|id| self.tenants.get(&id))
            .filter(|tenant| tenant.faults != Faults::default())
            .map(|tenant| tenant.faults.clone())
            .unwrap_or_else(|| self.faults.clone())
    }
}

/// A scenario file: the tenants the cloud starts with, and optional global faults.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    #[serde(default)]
    pub tenants: Vec<TenantSpec>,
    #[serde(default)]
    pub faults: Option<Faults>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantSpec {
    pub id: Uuid,
    pub domain: Option<String>,
    pub sharepoint_host: Option<String>,
    #[serde(default)]
    pub apps: Vec<AppSpec>,
    #[serde(default)]
    pub policy: Policy,
    #[serde(default)]
    pub faults: Option<Faults>,
}

/// Which permissions an app is granted: "all" (backup and rotation), "backup",
/// "none", or a list of "resource:Permission" (resource: graph, exchange, sharepoint).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum PermissionSpec {
    Preset(String),
    List(Vec<String>),
}

impl Default for PermissionSpec {
    fn default() -> Self {
        PermissionSpec::Preset("all".into())
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppSpec {
    pub app_id: Uuid,
    #[serde(default = "default_display_name")]
    pub display_name: String,
    #[serde(default = "yes")]
    pub owns_itself: bool,
    #[serde(default = "yes")]
    pub enabled: bool,
    #[serde(default)]
    pub permissions: PermissionSpec,
    /// Permissions taken away from `permissions` ("resource:Permission").
    #[serde(default)]
    pub missing: Vec<String>,
    #[serde(default)]
    pub secrets: Vec<SecretSpec>,
    /// Certificates registered on the app (PEM).
    #[serde(default)]
    pub certificates: Vec<CertificateSpec>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertificateSpec {
    pub pem: String,
    pub display_name: Option<String>,
    pub key_id: Option<Uuid>,
}

impl CertificateSpec {
    pub fn build(&self) -> Result<KeyCredential, String> {
        KeyCredential::from_certificate(self.pem.as_bytes(), self.display_name.clone(), self.key_id)
    }
}

fn default_display_name() -> String {
    "KODO for Cloud backup".into()
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretSpec {
    pub value: String,
    pub key_id: Option<Uuid>,
    pub display_name: Option<String>,
    /// An absolute expiry, or…
    pub expires: Option<DateTime<Utc>>,
    /// …days from now (negative: already expired). Default 180.
    pub expires_in_days: Option<i64>,
}

impl SecretSpec {
    pub fn build(&self, now: DateTime<Utc>) -> Result<Credential, String> {
        if self.value.len() < 3 || self.value.chars().any(char::is_whitespace) {
            return Err("a secret value needs at least 3 characters and no whitespace".into());
        }
        let end = match (self.expires, self.expires_in_days) {
            (Some(_), Some(_)) => {
                return Err("give either expires or expires_in_days, not both".into());
            }
            (Some(end), None) => end,
            (None, days) => now + chrono::Duration::days(days.unwrap_or(180)),
        };
        Ok(Credential {
            key_id: self.key_id.unwrap_or_else(Uuid::new_v4),
            display_name: self.display_name.clone(),
            secret: self.value.clone(),
            start: now.min(end),
            end,
            usable_from: Utc::now(),
        })
    }
}

/// "graph:User.Read.All" -> (Graph, role).
pub fn parse_permission(catalogue: &Catalogue, text: &str) -> Result<(Resource, Uuid), String> {
    catalogue.parse_permission(text)
}

pub fn permission_set(
    catalogue: &Catalogue,
    spec: &PermissionSpec,
    missing: &[String],
) -> Result<Vec<(Resource, Uuid)>, String> {
    let mut granted: Vec<(Resource, Uuid)> = match spec {
        PermissionSpec::Preset(preset) => catalogue.preset(preset)?,
        PermissionSpec::List(list) => list
            .iter()
            .map(|text| parse_permission(catalogue, text))
            .collect::<Result<_, _>>()?,
    };
    for text in missing {
        let key = parse_permission(catalogue, text)?;
        granted.retain(|candidate| *candidate != key);
    }
    Ok(granted)
}

pub fn assignments(granted: &[(Resource, Uuid)]) -> Vec<Assignment> {
    granted
        .iter()
        .map(|(resource, role)| Assignment {
            id: assignment_id(),
            resource: *resource,
            app_role_id: *role,
            created: Utc::now(),
        })
        .collect()
}

/// Graph's appRoleAssignment ids are opaque base64url strings.
fn assignment_id() -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Uuid::new_v4().as_bytes())
}

impl TenantSpec {
    fn build(self, catalogue: &Catalogue) -> Result<Tenant, String> {
        let now = Utc::now();
        if let Some(faults) = &self.faults {
            faults
                .validate()
                .map_err(|e| format!("tenant {}: {e}", self.id))?;
        }
        let mut applications = Vec::new();
        for app in self.apps {
            let context = |e: String| format!("tenant {}, app {}: {e}", self.id, app.app_id);
            let granted =
                permission_set(catalogue, &app.permissions, &app.missing).map_err(context)?;
            let credentials = app
                .secrets
                .iter()
                .map(|secret| secret.build(now))
                .collect::<Result<Vec<_>, _>>()
                .map_err(context)?;
            let key_credentials = app
                .certificates
                .iter()
                .map(CertificateSpec::build)
                .collect::<Result<Vec<_>, _>>()
                .map_err(context)?;
            applications.push(Application {
                object_id: Uuid::new_v4(),
                app_id: app.app_id,
                display_name: app.display_name,
                owns_itself: app.owns_itself,
                credentials,
                key_credentials,
                federated_credentials: Vec::new(),
                service_principal: Some(ServicePrincipal {
                    object_id: Uuid::new_v4(),
                    account_enabled: app.enabled,
                    assignments: assignments(&granted),
                    credentials: Vec::new(),
                    key_credentials: Vec::new(),
                }),
            });
        }
        let short = self.id.simple().to_string()[..8].to_string();
        Ok(Tenant {
            id: self.id,
            domain: self
                .domain
                .unwrap_or_else(|| format!("tenant-{short}.onmicrosoft.com")),
            sharepoint_host: self.sharepoint_host,
            applications,
            policy: self.policy,
            faults: self.faults.unwrap_or_default(),
            budget: BudgetWindow::default(),
        })
    }
}

impl Scenario {
    /// Parses a scenario in TOML or JSON (by extension, else by trying both).
    pub fn parse(path_hint: &str, text: &str) -> Result<Scenario, String> {
        let json = path_hint.ends_with(".json") || text.trim_start().starts_with('{');
        if json {
            serde_json::from_str(text).map_err(|error| format!("invalid scenario (JSON): {error}"))
        } else {
            toml::from_str(text).map_err(|error| format!("invalid scenario (TOML): {error}"))
        }
    }
}
