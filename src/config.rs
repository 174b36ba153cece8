//! Layered settings, parsed once into typed values.
//!
//! Layers, bottom to top: `config/default.toml` (compiled in), the operator's file
//! (`--config PATH`, default `/etc/kodo-access/config.toml`), then environment variables
//! `KODO_ACCESS__SECTION__KEY`. Nothing is looked up relative to the current directory.
//!
//! Secrets are never values in this file: they are references (`*_file`, `*_credential`)
//! resolved by [`SecretSource::read`], which refuses files that other users can read.
//! This module must never log or print a secret; [`Settings::redacted`] is what
//! `config check` prints.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use url::Url;

use crate::microsoft::permissions::Manifest;
pub use kodo_microsoft::cloud::CloudSettings;

/// The built-in defaults, also the documentation of every key.
pub const DEFAULT_TOML: &str = include_str!("../config/default.toml");
/// The permissions the app must hold, as shipped (`config/permissions.toml`); the
/// `microsoft.permissions_file` setting replaces it.
pub const DEFAULT_MANIFEST: &str = include_str!("../config/permissions.toml");

pub fn builtin_manifest() -> Manifest {
    Manifest::parse(DEFAULT_MANIFEST).expect("the built-in manifest is valid")
}

pub const DEFAULT_CONFIG_PATH: &str = "/etc/kodo-access/config.toml";
pub const ENV_PREFIX: &str = "KODO_ACCESS";

/// A configuration problem the operator must fix: exit status 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

fn config_error(message: impl Into<String>) -> ConfigError {
    ConfigError(message.into())
}

/// Where the configuration file is and whether the operator named it explicitly.
#[derive(Debug, Clone)]
pub struct ConfigLocation {
    pub path: PathBuf,
    /// An explicit `--config` that does not exist is an error; the default path may be absent.
    pub explicit: bool,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct RawSettings {
    log: RawLog,
    database: RawDatabase,
    crypto: RawCrypto,
    http: RawHttp,
    daemon: RawDaemon,
    jobs: RawJobs,
    microsoft: RawMicrosoft,
    checks: RawChecks,
    alerts: RawAlerts,
    rotation: RawRotation,
    #[serde(default)]
    clouds: BTreeMap<String, RawCloud>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct RawMicrosoft {
    max_requests_in_flight: usize,
    #[serde(with = "humantime_serde")]
    connect_timeout: Duration,
    #[serde(with = "humantime_serde")]
    request_timeout: Duration,
    retry_attempts: u32,
    #[serde(with = "humantime_serde")]
    retry_max_elapsed: Duration,
    #[serde(with = "humantime_serde")]
    retry_min_delay: Duration,
    #[serde(with = "humantime_serde")]
    retry_max_delay: Duration,
    ca_file: Option<PathBuf>,
    permissions_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct RawLog {
    level: String,
    format: LogFormat,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct RawDatabase {
    url: String,
    password_file: Option<PathBuf>,
    password_credential: Option<String>,
    max_connections: u32,
    #[serde(with = "humantime_serde")]
    connect_timeout: Duration,
    #[serde(with = "humantime_serde")]
    health_interval: Duration,
    auto_migrate: bool,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct RawCrypto {
    master_key_file: Option<PathBuf>,
    master_key_credential: Option<String>,
    previous_key_files: Vec<PathBuf>,
    previous_key_credentials: Vec<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct RawHttp {
    listen: String,
    #[serde(with = "humantime_serde")]
    request_timeout: Duration,
    max_connections: usize,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct RawDaemon {
    #[serde(with = "humantime_serde")]
    shutdown_timeout: Duration,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct RawJobs {
    housekeeping: RawHousekeeping,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct RawHousekeeping {
    schedule: String,
    #[serde(with = "humantime_serde")]
    check_history_retention: Duration,
    #[serde(with = "humantime_serde")]
    delivered_alert_retention: Duration,
    #[serde(with = "humantime_serde")]
    job_run_retention: Duration,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct RawChecks {
    #[serde(with = "humantime_serde")]
    interval: Duration,
    #[serde(with = "humantime_serde")]
    pickup_interval: Duration,
    #[serde(with = "humantime_serde")]
    warning_window: Duration,
    #[serde(with = "humantime_serde")]
    confirm_delay: Duration,
    #[serde(with = "humantime_serde")]
    retry_failed_after: Duration,
    #[serde(with = "humantime_serde")]
    failing_alert_after: Duration,
    max_concurrent_checks: usize,
    max_checks_per_tenant: usize,
    resources: Vec<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct RawRotation {
    enabled: bool,
    #[serde(with = "humantime_serde")]
    lead_time: Duration,
    #[serde(with = "humantime_serde")]
    lifetime: Duration,
    #[serde(with = "humantime_serde")]
    verify_timeout: Duration,
    #[serde(with = "humantime_serde")]
    grace: Duration,
    #[serde(with = "humantime_serde")]
    pickup_interval: Duration,
    #[serde(with = "humantime_serde", default = "default_prepare_ahead")]
    prepare_ahead: Duration,
    #[serde(default = "default_new_credential")]
    credential_for_new_organizations: String,
    #[serde(default)]
    file: Vec<RawFileDeliverer>,
    #[serde(default)]
    command: Vec<RawCommandDeliverer>,
    #[serde(default)]
    webhook: Vec<RawRotationWebhook>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct RawFileDeliverer {
    directory: PathBuf,
    #[serde(default = "default_file_mode")]
    mode: String,
    group: Option<String>,
    /// Also write a certificate as `{organization}.pfx` (PKCS#12) under the passphrase in
    /// this file (or systemd credential).
    pkcs12_passphrase_file: Option<PathBuf>,
    pkcs12_passphrase_credential: Option<String>,
    /// Only these organizations (by name); every organization when empty.
    #[serde(default)]
    organizations: Vec<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct RawRotationWebhook {
    /// A name for people (optional).
    #[serde(default)]
    name: Option<String>,
    url: String,
    secret_file: Option<PathBuf>,
    secret_credential: Option<String>,
    #[serde(default)]
    organizations: Vec<String>,
    #[serde(default)]
    basic_auth: Option<RawBasicAuth>,
    #[serde(default)]
    bearer: Option<RawBearer>,
    #[serde(default)]
    tls: Option<RawTls>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct RawBasicAuth {
    username: String,
    password_file: Option<PathBuf>,
    password_credential: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct RawBearer {
    token_file: Option<PathBuf>,
    token_credential: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    ca_file: Option<PathBuf>,
    certificate_file: Option<PathBuf>,
    key_file: Option<PathBuf>,
    key_credential: Option<String>,
}

fn default_file_mode() -> String {
    "0600".into()
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct RawCommandDeliverer {
    program: PathBuf,
    #[serde(default)]
    args: Vec<String>,
    #[serde(with = "humantime_serde", default = "default_command_timeout")]
    timeout: Duration,
    #[serde(default)]
    organizations: Vec<String>,
}

fn default_command_timeout() -> Duration {
    Duration::from_secs(30)
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct RawAlerts {
    #[serde(with = "humantime_serde")]
    delivery_interval: Duration,
    #[serde(with = "humantime_serde")]
    resend_interval: Duration,
    #[serde(with = "humantime_serde")]
    max_delivery_backoff: Duration,
    #[serde(default)]
    alertmanager: Vec<RawAlertmanager>,
    #[serde(default)]
    webhook: Vec<RawWebhook>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct RawAlertmanager {
    name: String,
    url: String,
    #[serde(default)]
    allow_insecure_http: bool,
    #[serde(default)]
    basic_auth: Option<RawBasicAuth>,
    #[serde(default)]
    bearer: Option<RawBearer>,
    #[serde(default)]
    tls: Option<RawTls>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct RawWebhook {
    name: String,
    url: String,
    secret_file: Option<PathBuf>,
    secret_credential: Option<String>,
    #[serde(default)]
    basic_auth: Option<RawBasicAuth>,
    #[serde(default)]
    bearer: Option<RawBearer>,
    #[serde(default)]
    tls: Option<RawTls>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct RawCloud {
    authority: String,
    graph: String,
    exchange: String,
    sharepoint_suffix: String,
    graph_resource: Option<String>,
    exchange_resource: Option<String>,
    sharepoint: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// The effective, validated configuration.
#[derive(Debug, Clone, Serialize)]
pub struct Settings {
    pub log: LogSettings,
    pub database: DatabaseSettings,
    pub crypto: CryptoSettings,
    pub http: HttpSettings,
    pub daemon: DaemonSettings,
    pub jobs: JobSettings,
    pub microsoft: MicrosoftSettings,
    pub checks: CheckSettings,
    pub alerts: AlertSettings,
    pub rotation: RotationSettings,
    #[serde(serialize_with = "show::clouds")]
    pub clouds: BTreeMap<String, CloudSettings>,
    /// The file that was read, if any (for `config check`).
    #[serde(skip)]
    pub source_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Serialize)]
pub struct LogSettings {
    pub level: String,
    pub format: LogFormat,
}

#[derive(Debug, Clone, Serialize)]
pub struct DatabaseSettings {
    #[serde(serialize_with = "show::database_url")]
    pub url: Url,
    #[serde(serialize_with = "show::unset_as_none")]
    pub password: Option<SecretSource>,
    pub max_connections: u32,
    #[serde(serialize_with = "show::duration")]
    pub connect_timeout: Duration,
    #[serde(serialize_with = "show::duration")]
    pub health_interval: Duration,
    pub auto_migrate: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct CryptoSettings {
    /// `None` when neither a file nor a credential is configured.
    #[serde(serialize_with = "show::unset_as_not_configured")]
    pub master_key: Option<SecretSource>,
    pub previous_keys: Vec<SecretSource>,
}

#[derive(Debug, Clone, Serialize)]
pub struct HttpSettings {
    pub listen: SocketAddr,
    /// A client sends a request's headers within this, and is answered within it.
    #[serde(serialize_with = "show::duration")]
    pub request_timeout: Duration,
    /// Connections served at once; more are closed at once.
    pub max_connections: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct DaemonSettings {
    #[serde(serialize_with = "show::duration")]
    pub shutdown_timeout: Duration,
}

#[derive(Debug, Clone, Serialize)]
pub struct JobSettings {
    pub housekeeping: HousekeepingSettings,
}

#[derive(Debug, Clone, Serialize)]
pub struct HousekeepingSettings {
    pub schedule: String,
    #[serde(serialize_with = "show::duration")]
    pub check_history_retention: Duration,
    #[serde(serialize_with = "show::duration")]
    pub delivered_alert_retention: Duration,
    #[serde(serialize_with = "show::duration")]
    pub job_run_retention: Duration,
}

#[derive(Debug, Clone, Serialize)]
pub struct CheckSettings {
    #[serde(serialize_with = "show::duration")]
    pub interval: Duration,
    #[serde(serialize_with = "show::duration")]
    pub pickup_interval: Duration,
    #[serde(serialize_with = "show::duration")]
    pub warning_window: Duration,
    #[serde(serialize_with = "show::duration")]
    pub confirm_delay: Duration,
    #[serde(serialize_with = "show::duration")]
    pub retry_failed_after: Duration,
    #[serde(serialize_with = "show::duration")]
    pub failing_alert_after: Duration,
    pub max_concurrent_checks: usize,
    pub max_checks_per_tenant: usize,
    pub resources: Vec<crate::microsoft::Resource>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RotationSettings {
    pub enabled: bool,
    #[serde(flatten, with = "show::PolicyShown")]
    pub policy: crate::domain::plan::RotationPolicy,
    #[serde(serialize_with = "show::duration")]
    pub verify_timeout: Duration,
    #[serde(serialize_with = "show::duration")]
    pub grace: Duration,
    #[serde(serialize_with = "show::duration")]
    pub pickup_interval: Duration,
    /// How long before a certificate's rotation is due its new key pair and certificate
    /// are made (zero: when the rotation starts).
    #[serde(serialize_with = "show::duration")]
    pub prepare_ahead: Duration,
    /// What an organization registered with a secret is to have: with `certificate`, its
    /// setting `credential = certificate` is written at registration (the rotation job then
    /// moves it); existing organizations are left as they are.
    pub credential_for_new_organizations: crate::domain::CredentialKind,
    pub deliverers: Vec<ScopedDeliverer>,
}

/// A deliverer and the organizations it serves (every one when the list is empty).
#[derive(Debug, Clone, Serialize)]
pub struct ScopedDeliverer {
    #[serde(flatten)]
    pub deliverer: Deliverer,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub organizations: Vec<String>,
}

impl ScopedDeliverer {
    pub fn serves(&self, organization: &str) -> bool {
        self.organizations.is_empty() || self.organizations.iter().any(|name| name == organization)
    }
}

impl RotationSettings {
    /// The deliverers that hand this organization's new secrets to the backup server.
    pub fn deliverers_for(&self, organization: &str) -> Vec<Deliverer> {
        self.deliverers
            .iter()
            .filter(|scoped| scoped.serves(organization))
            .map(|scoped| scoped.deliverer.clone())
            .collect()
    }

    /// Whether the daemon rotates secrets at all: switched on, and with somewhere to hand
    /// the new secret. Without a deliverer the backup server would keep using the old
    /// secret, which rotation removes after the grace period, so nothing is rotated.
    pub fn active(&self) -> bool {
        self.enabled && !self.deliverers.is_empty()
    }

    /// Whether this organization's secret is rotated: on, a deliverer serves it, and not
    /// switched off for it (`org set ORG --rotation off`).
    pub fn active_for(
        &self,
        organization: &str,
        organization_settings: &crate::domain::OrganizationSettings,
    ) -> bool {
        self.enabled
            && self
                .deliverers
                .iter()
                .any(|scoped| scoped.serves(organization))
            && organization_settings.rotation != Some(false)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct AlertSettings {
    #[serde(serialize_with = "show::duration")]
    pub delivery_interval: Duration,
    #[serde(serialize_with = "show::duration")]
    pub resend_interval: Duration,
    #[serde(serialize_with = "show::duration")]
    pub max_delivery_backoff: Duration,
    #[serde(rename = "alertmanager")]
    pub alertmanagers: Vec<AlertmanagerSink>,
    #[serde(rename = "webhook")]
    pub webhooks: Vec<WebhookSink>,
}

#[derive(Debug, Clone, Serialize)]
pub struct AlertmanagerSink {
    pub name: String,
    #[serde(serialize_with = "show::url")]
    pub url: Url,
    /// Plain http to a host other than loopback, asked for by the operator.
    pub allow_insecure_http: bool,
    pub access: SinkAccess,
}

#[derive(Debug, Clone, Serialize)]
pub struct WebhookSink {
    pub name: String,
    #[serde(serialize_with = "show::url")]
    pub url: Url,
    pub secret: SecretSource,
    pub access: SinkAccess,
}

impl AlertSettings {
    /// Every sink's outbox name: `alertmanager:NAME` or `webhook:NAME`.
    pub fn sink_names(&self) -> Vec<String> {
        self.alertmanagers
            .iter()
            .map(|sink| format!("alertmanager:{}", sink.name))
            .chain(
                self.webhooks
                    .iter()
                    .map(|sink| format!("webhook:{}", sink.name)),
            )
            .collect()
    }
}

/// How kodo-access talks to Microsoft.
#[derive(Debug, Clone, Serialize)]
pub struct MicrosoftSettings {
    /// What the Microsoft client itself needs: limits, timeouts, retries, trusted roots.
    #[serde(flatten, with = "show::ClientShown")]
    pub client: kodo_microsoft::ClientSettings,
    #[serde(skip)]
    pub manifest: Arc<crate::microsoft::permissions::Manifest>,
    #[serde(serialize_with = "show::permissions_file")]
    pub permissions_file: Option<PathBuf>,
}

/// A rotation deliverer (`[[rotation.file]]`, `[[rotation.command]]`, `[[rotation.webhook]]`):
/// where a new secret goes; `rotation::deliver` delivers it.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum Deliverer {
    /// `{directory}/{organization}.json`, written to a temporary file and renamed over;
    /// with `pkcs12`, a certificate also as `{organization}.pfx` under that passphrase.
    File {
        #[serde(rename = "file")]
        directory: PathBuf,
        #[serde(serialize_with = "show::mode")]
        mode: u32,
        group: Option<u32>,
        pkcs12: Option<SecretSource>,
    },
    /// A program run with the ids in its environment and the secret on standard input;
    /// success is exit status 0 within `timeout`.
    Command {
        #[serde(rename = "command")]
        program: PathBuf,
        args: Vec<String>,
        #[serde(serialize_with = "show::duration")]
        timeout: Duration,
    },
    /// A POST of the JSON document, signed like the alert webhook.
    Webhook {
        #[serde(rename = "webhook", serialize_with = "show::url")]
        url: url::Url,
        key: SecretSource,
        access: Box<SinkAccess>,
    },
}

/// A sink's authentication and TLS settings.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SinkAccess {
    pub auth: Option<SinkAuth>,
    pub tls: Option<SinkTls>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SinkAuth {
    /// `Authorization: Basic` (Alertmanager's `basic_auth_users`, most reverse proxies).
    Basic {
        username: String,
        password: SecretSource,
    },
    /// `Authorization: Bearer TOKEN`.
    Bearer { token: SecretSource },
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct SinkTls {
    /// Trust only the CAs in this PEM file (instead of the built-in roots).
    pub ca_file: Option<PathBuf>,
    /// Present this certificate (mutual TLS).
    pub client_certificate: Option<ClientCertificate>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ClientCertificate {
    /// PEM: the certificate, then any intermediates.
    pub certificate_file: PathBuf,
    /// PEM: the private key (a secret file or systemd credential).
    pub key: SecretSource,
}

/// Where a secret comes from. Reading it is deferred to the command that needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    File {
        key: String,
        path: PathBuf,
    },
    /// `directory` is `$CREDENTIALS_DIRECTORY` as it was when the configuration was loaded.
    Credential {
        key: String,
        name: String,
        directory: Option<PathBuf>,
    },
}

/// A secret is shown only as where it comes from: whatever holds a `SecretSource` can be
/// printed by `config check` without a per-key rule.
impl Serialize for SecretSource {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&format_args!("<redacted: {self}>"))
    }
}

impl fmt::Display for SecretSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretSource::File { path, .. } => write!(f, "file {}", path.display()),
            SecretSource::Credential { name, .. } => write!(f, "systemd credential {name}"),
        }
    }
}

impl SecretSource {
    /// The configuration key this secret was configured under, for error messages.
    pub fn key(&self) -> &str {
        match self {
            SecretSource::File { key, .. } | SecretSource::Credential { key, .. } => key,
        }
    }

    /// Reads the secret, with one trailing newline removed.
    pub fn read(&self) -> Result<SecretString, ConfigError> {
        let path = match self {
            SecretSource::File { path, .. } => path.clone(),
            SecretSource::Credential {
                key,
                name,
                directory,
            } => {
                let directory = directory.as_ref().ok_or_else(|| {
                    config_error(format!(
                        "{key}: systemd credential {name:?} requested but $CREDENTIALS_DIRECTORY is not set (is the service started with LoadCredential={name}:...?)"
                    ))
                })?;
                directory.join(name)
            }
        };
        read_secret_file(&path)
            .map_err(|message| config_error(format!("{}: {message}", self.key())))
    }
}

/// Reads a file that holds a secret, refusing it when users other than its owner and
/// group can read it. The content is trimmed of one trailing newline.
pub fn read_secret_file(path: &Path) -> Result<SecretString, String> {
    let content = read_secret_bytes(path)?;
    let text = std::str::from_utf8(&content)
        .map_err(|_| format!("secret file {} is not UTF-8 text", path.display()))?;
    let text = text
        .strip_suffix('\n')
        .map(|text| text.strip_suffix('\r').unwrap_or(text))
        .unwrap_or(text);
    Ok(SecretString::from(Box::<str>::from(text)))
}

/// As [`read_secret_file`], for a binary file (a PKCS#12 file): the same refusals, the
/// bytes as they are, in a buffer wiped when dropped.
pub fn read_secret_bytes(path: &Path) -> Result<zeroize::Zeroizing<Vec<u8>>, String> {
    let metadata = std::fs::metadata(path)
        .map_err(|error| format!("cannot read secret file {}: {error}", path.display()))?;
    if !metadata.is_file() {
        return Err(format!(
            "secret file {} is not a regular file",
            path.display()
        ));
    }
    let mode = metadata.permissions().mode() & 0o777;
    if mode & 0o007 != 0 {
        return Err(format!(
            "secret file {} is accessible to other users (mode {mode:04o}); restrict it with chmod 600 or 640",
            path.display()
        ));
    }
    if mode & 0o020 != 0 {
        return Err(format!(
            "secret file {} is writable by its group (mode {mode:04o}): anyone in it could swap the secret; restrict it with chmod 600 or 640",
            path.display()
        ));
    }
    // Owned by root or by the user reading it: anyone else could replace it.
    let owner = std::os::unix::fs::MetadataExt::uid(&metadata);
    let me = rustix::process::geteuid().as_raw();
    if owner != 0 && owner != me {
        return Err(format!(
            "secret file {} is owned by uid {owner}, neither root nor this service's user (uid {me}): chown it",
            path.display()
        ));
    }
    // Read straight into the spare room of a buffer that is wiped when dropped (no
    // intermediate buffer on the stack); the secret is copied out once, at its exact length
    // (a `String` that shrinks or grows leaves copies in freed memory).
    let mut content = zeroize::Zeroizing::new(Vec::with_capacity(
        usize::try_from(metadata.len()).unwrap_or(0) + 1,
    ));
    std::io::Read::read_to_end(
        &mut std::io::Read::take(
            std::fs::File::open(path)
                .map_err(|error| format!("cannot read secret file {}: {error}", path.display()))?,
            metadata.len(),
        ),
        &mut content,
    )
    .map_err(|error| format!("cannot read secret file {}: {error}", path.display()))?;
    Ok(content)
}

impl Settings {
    /// Loads and validates the configuration from all layers.
    pub fn load(location: &ConfigLocation) -> Result<Settings, ConfigError> {
        let environment: Vec<(String, String)> = std::env::vars().collect();
        Self::load_with_environment(location, environment)
    }

    /// As [`Settings::load`], with the environment given explicitly (for tests).
    pub fn load_with_environment(
        location: &ConfigLocation,
        environment: Vec<(String, String)>,
    ) -> Result<Settings, ConfigError> {
        let mut builder = config::Config::builder().add_source(config::File::from_str(
            DEFAULT_TOML,
            config::FileFormat::Toml,
        ));
        let source_file = if location.path.exists() {
            builder = builder.add_source(
                config::File::from(location.path.as_path()).format(config::FileFormat::Toml),
            );
            Some(location.path.clone())
        } else if location.explicit {
            return Err(config_error(format!(
                "configuration file {} does not exist",
                location.path.display()
            )));
        } else {
            None
        };
        let credentials_directory = environment
            .iter()
            .find(|(name, _)| name == "CREDENTIALS_DIRECTORY")
            .map(|(_, value)| PathBuf::from(value))
            .filter(|path| !path.as_os_str().is_empty());
        let environment: config::Map<String, String> = environment
            .into_iter()
            .filter(|(name, _)| name.starts_with(&format!("{ENV_PREFIX}__")))
            .collect();
        builder = builder.add_source(
            config::Environment::with_prefix(ENV_PREFIX)
                .prefix_separator("__")
                .separator("__")
                .list_separator(",")
                .with_list_parse_key("crypto.previous_key_files")
                .with_list_parse_key("crypto.previous_key_credentials")
                .try_parsing(true)
                .source(Some(environment)),
        );
        let layered = builder
            .build()
            .map_err(|error| config_error(format!("invalid configuration: {error}")))?;
        let raw: RawSettings = serde_path_to_error::deserialize(layered).map_err(|error| {
            let path = error.path().to_string();
            let inner = error.into_inner();
            if path == "." || path.is_empty() {
                config_error(format!("invalid configuration: {inner}"))
            } else {
                config_error(format!("invalid configuration key {path}: {inner}"))
            }
        })?;
        Self::validate(raw, source_file, credentials_directory.as_deref())
    }

    /// Checks every setting and builds the typed settings, one section at a time; the
    /// first error wins.
    fn validate(
        raw: RawSettings,
        source_file: Option<PathBuf>,
        credentials_directory: Option<&Path>,
    ) -> Result<Settings, ConfigError> {
        let log = log_settings(raw.log)?;
        let database = database_settings(raw.database, credentials_directory)?;
        let crypto = crypto_settings(raw.crypto, credentials_directory)?;
        let http = http_settings(raw.http)?;
        positive("daemon.shutdown_timeout", raw.daemon.shutdown_timeout)?;
        let jobs = job_settings(raw.jobs)?;
        let clouds = cloud_settings(raw.clouds)?;
        let microsoft = microsoft_settings(raw.microsoft)?;
        let checks = check_settings(raw.checks)?;
        let alerts = alert_settings(raw.alerts, credentials_directory)?;
        let rotation = rotation_settings(raw.rotation, credentials_directory)?;
        Ok(Settings {
            rotation,
            checks,
            alerts,
            microsoft,
            log,
            database,
            crypto,
            http,
            daemon: DaemonSettings {
                shutdown_timeout: raw.daemon.shutdown_timeout,
            },
            jobs,
            clouds,
            source_file,
        })
    }

    /// The effective configuration as TOML, every secret replaced by where it comes from:
    /// the settings' own `Serialize`, so a new key is shown without a rule of its own, and
    /// a secret (a `SecretSource`, a URL's credentials or query) can only be shown redacted.
    pub fn redacted(&self) -> String {
        let mut text = String::new();
        let document = match serde_json::to_value(self) {
            Ok(document) => document,
            // Never an empty document that looks like defaults.
            Err(error) => return format!("# the configuration cannot be shown: {error}\n"),
        };
        if let Some(path) = &self.source_file {
            text.push_str(&format!("# configuration file: {}\n", path.display()));
        } else {
            text.push_str("# configuration file: none (built-in defaults and environment)\n");
        }
        // TOML has no null: an unset value is left out.
        let document = without_nulls(document);
        match toml::to_string_pretty(&document) {
            Ok(rendered) => text.push_str(&rendered),
            Err(_) => text.push_str(&serde_json::to_string_pretty(&document).unwrap_or_default()),
        }
        text
    }
}

fn without_nulls(value: serde_json::Value) -> serde_json::Value {
    match value {
        serde_json::Value::Object(map) => serde_json::Value::Object(
            map.into_iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k, without_nulls(v)))
                .collect(),
        ),
        serde_json::Value::Array(items) => {
            serde_json::Value::Array(items.into_iter().map(without_nulls).collect())
        }
        other => other,
    }
}

/// How `config check` shows what is not shown as itself: durations as an operator writes
/// them, URLs without their credentials or query values, file modes in octal, and the
/// Microsoft client's and the rotation plan's settings under the configuration's keys
/// (serde's remote derive: those types live in crates below this one).
mod show {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use serde::{Serialize, Serializer};
    use url::Url;

    pub fn duration<S: Serializer>(value: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&super::format_duration(*value))
    }

    pub fn chrono_duration<S: Serializer>(
        value: &chrono::Duration,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        duration(&value.to_std().unwrap_or_default(), serializer)
    }

    /// A sink's or deliverer's URL: no user name, password or query value.
    pub fn url<S: Serializer>(value: &Url, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&super::redact_url(value))
    }

    /// The database URL keeps its role (no secret) and loses any password.
    pub fn database_url<S: Serializer>(value: &Url, serializer: S) -> Result<S::Ok, S::Error> {
        let mut url = value.clone();
        if url.password().is_some() {
            let _ = url.set_password(Some("REDACTED"));
        }
        serializer.serialize_str(&super::redact_url_query(&url))
    }

    pub fn permissions_file<S: Serializer>(
        value: &Option<std::path::PathBuf>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match value {
            Some(path) => serializer.collect_str(&path.display()),
            None => serializer.serialize_str("<built in>"),
        }
    }

    /// An unset secret says so (TOML has no null, and an absent key reads as forgotten).
    pub fn unset_as_none<S: Serializer>(
        value: &Option<super::SecretSource>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match value {
            Some(source) => source.serialize(serializer),
            None => serializer.serialize_str("<none>"),
        }
    }

    pub fn unset_as_not_configured<S: Serializer>(
        value: &Option<super::SecretSource>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match value {
            Some(source) => source.serialize(serializer),
            None => serializer.serialize_str("<not configured>"),
        }
    }

    pub fn mode<S: Serializer>(value: &u32, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&format_args!("{value:04o}"))
    }

    fn plain_url<S: Serializer>(value: &Url, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(value.as_str())
    }

    #[derive(Serialize)]
    #[serde(remote = "kodo_microsoft::ClientSettings")]
    pub struct ClientShown {
        max_requests_in_flight: usize,
        #[serde(serialize_with = "duration")]
        connect_timeout: Duration,
        #[serde(serialize_with = "duration")]
        request_timeout: Duration,
        #[serde(flatten, with = "RetryShown")]
        retry: kodo_microsoft::RetryPolicy,
        ca_file: Option<std::path::PathBuf>,
    }

    #[derive(Serialize)]
    #[serde(remote = "kodo_microsoft::RetryPolicy")]
    struct RetryShown {
        #[serde(rename = "retry_attempts")]
        max_attempts: u32,
        #[serde(rename = "retry_max_elapsed", serialize_with = "duration")]
        max_elapsed: Duration,
        #[serde(rename = "retry_min_delay", serialize_with = "duration")]
        min_delay: Duration,
        #[serde(rename = "retry_max_delay", serialize_with = "duration")]
        max_delay: Duration,
    }

    #[derive(Serialize)]
    #[serde(remote = "crate::domain::plan::RotationPolicy")]
    pub struct PolicyShown {
        #[serde(serialize_with = "chrono_duration")]
        lead_time: chrono::Duration,
        #[serde(serialize_with = "chrono_duration")]
        lifetime: chrono::Duration,
    }

    #[derive(Serialize)]
    #[serde(remote = "kodo_microsoft::cloud::CloudSettings")]
    struct CloudShown {
        #[serde(serialize_with = "plain_url")]
        authority: Url,
        #[serde(serialize_with = "plain_url")]
        graph: Url,
        #[serde(serialize_with = "plain_url")]
        exchange: Url,
        sharepoint_suffix: String,
        #[serde(serialize_with = "plain_url")]
        graph_resource: Url,
        #[serde(serialize_with = "plain_url")]
        exchange_resource: Url,
        #[serde(serialize_with = "sharepoint")]
        sharepoint: Option<Url>,
    }

    fn sharepoint<S: Serializer>(value: &Option<Url>, serializer: S) -> Result<S::Ok, S::Error> {
        match value {
            Some(url) => plain_url(url, serializer),
            None => serializer.serialize_str("https://{sharepoint_host}"),
        }
    }

    pub fn clouds<S: Serializer>(
        value: &BTreeMap<String, kodo_microsoft::cloud::CloudSettings>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Cloud<'a>(#[serde(with = "CloudShown")] &'a kodo_microsoft::cloud::CloudSettings);
        serializer.collect_map(value.iter().map(|(name, cloud)| (name, Cloud(cloud))))
    }
}

/// A duration as an operator writes it: "90d", "15m", "20s", "1h30m".
pub fn format_duration(duration: Duration) -> String {
    let mut seconds = duration.as_secs();
    if seconds == 0 {
        return format!("{}ms", duration.as_millis());
    }
    let mut text = String::new();
    for (unit, size) in [("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)] {
        if seconds >= size {
            text.push_str(&format!("{}{unit}", seconds / size));
            seconds %= size;
        }
    }
    text
}

fn log_settings(raw: RawLog) -> Result<LogSettings, ConfigError> {
    if raw.level.trim().is_empty() || tracing_subscriber::EnvFilter::try_new(&raw.level).is_err() {
        return Err(config_error(format!(
            "invalid configuration key log.level: {:?} is not a tracing filter (expected e.g. \"info\" or \"kodo_access=debug,info\")",
            raw.level
        )));
    }
    Ok(LogSettings {
        level: raw.level,
        format: raw.format,
    })
}

fn database_settings(
    raw: RawDatabase,
    credentials_directory: Option<&Path>,
) -> Result<DatabaseSettings, ConfigError> {
    let url = Url::parse(&raw.url).map_err(|error| {
        config_error(format!(
            "invalid configuration key database.url: {error} (expected postgres://user@host/database)"
        ))
    })?;
    if url.scheme() != "postgres" && url.scheme() != "postgresql" {
        return Err(config_error(format!(
            "invalid configuration key database.url: scheme {:?} is not postgres:// or postgresql://",
            url.scheme()
        )));
    }
    if raw.max_connections == 0 {
        return Err(config_error(
            "invalid configuration key database.max_connections: expected at least 1",
        ));
    }
    positive("database.connect_timeout", raw.connect_timeout)?;
    positive("database.health_interval", raw.health_interval)?;
    let password = secret_source(
        "database.password",
        raw.password_file,
        raw.password_credential,
        false,
        credentials_directory,
    )?;
    Ok(DatabaseSettings {
        url,
        password,
        max_connections: raw.max_connections,
        connect_timeout: raw.connect_timeout,
        health_interval: raw.health_interval,
        auto_migrate: raw.auto_migrate,
    })
}

fn crypto_settings(
    raw: RawCrypto,
    credentials_directory: Option<&Path>,
) -> Result<CryptoSettings, ConfigError> {
    let master_key = secret_source(
        "crypto.master_key",
        raw.master_key_file,
        raw.master_key_credential,
        true,
        credentials_directory,
    )?;
    let mut previous_keys = Vec::new();
    for (index, path) in raw.previous_key_files.into_iter().enumerate() {
        previous_keys.push(SecretSource::File {
            key: format!("crypto.previous_key_files[{index}]"),
            path: absolute("crypto.previous_key_files", path)?,
        });
    }
    for (index, name) in raw.previous_key_credentials.into_iter().enumerate() {
        previous_keys.push(SecretSource::Credential {
            key: format!("crypto.previous_key_credentials[{index}]"),
            name: credential_name("crypto.previous_key_credentials", name)?,
            directory: credentials_directory.map(Path::to_path_buf),
        });
    }
    Ok(CryptoSettings {
        master_key,
        previous_keys,
    })
}

fn http_settings(raw: RawHttp) -> Result<HttpSettings, ConfigError> {
    positive("http.request_timeout", raw.request_timeout)?;
    if raw.max_connections == 0 {
        return Err(config_error(
            "invalid configuration key http.max_connections: expected at least 1",
        ));
    }
    let listen: SocketAddr = raw.listen.parse().map_err(|_| {
        config_error(format!(
            "invalid configuration key http.listen: {:?} is not an address (expected e.g. \"127.0.0.1:9787\")",
            raw.listen
        ))
    })?;
    Ok(HttpSettings {
        listen,
        request_timeout: raw.request_timeout,
        max_connections: raw.max_connections,
    })
}

fn job_settings(raw: RawJobs) -> Result<JobSettings, ConfigError> {
    validate_schedule(&raw.housekeeping.schedule).map_err(|error| {
        config_error(format!(
            "invalid configuration key jobs.housekeeping.schedule: {error} (expected a cron expression with seconds, e.g. \"0 17 * * * *\")"
        ))
    })?;
    positive(
        "jobs.housekeeping.check_history_retention",
        raw.housekeeping.check_history_retention,
    )?;
    positive(
        "jobs.housekeeping.delivered_alert_retention",
        raw.housekeeping.delivered_alert_retention,
    )?;
    positive(
        "jobs.housekeeping.job_run_retention",
        raw.housekeeping.job_run_retention,
    )?;
    Ok(JobSettings {
        housekeeping: HousekeepingSettings {
            schedule: raw.housekeeping.schedule,
            check_history_retention: raw.housekeeping.check_history_retention,
            delivered_alert_retention: raw.housekeeping.delivered_alert_retention,
            job_run_retention: raw.housekeeping.job_run_retention,
        },
    })
}

/// Microsoft's clouds and those the configuration defines (e.g. one pointing at the
/// simulator).
fn cloud_settings(
    raw: BTreeMap<String, RawCloud>,
) -> Result<BTreeMap<String, CloudSettings>, ConfigError> {
    let mut clouds = kodo_microsoft::cloud::builtin_clouds();
    for (name, cloud) in raw {
        let key = format!("clouds.{name}");
        if !crate::domain::is_valid_cloud_name(&name) {
            return Err(config_error(format!(
                "invalid configuration key {key}: cloud names are lowercase letters, digits and '-'"
            )));
        }
        if clouds.contains_key(&name) {
            return Err(config_error(format!(
                "invalid configuration key {key}: {name} is a built-in cloud and cannot be redefined"
            )));
        }
        let graph = secure_url(&format!("{key}.graph"), &cloud.graph, None)?;
        let exchange = secure_url(&format!("{key}.exchange"), &cloud.exchange, None)?;
        let resource = |name: &str, value: Option<String>, default: &Url| match value {
            Some(value) => Url::parse(&value).map_err(|error| {
                config_error(format!(
                    "invalid configuration key {key}.{name}: {error} (expected a URL)"
                ))
            }),
            None => Ok(default.clone()),
        };
        let cloud = CloudSettings {
            authority: secure_url(&format!("{key}.authority"), &cloud.authority, None)?,
            graph_resource: resource("graph_resource", cloud.graph_resource, &graph)?,
            exchange_resource: resource("exchange_resource", cloud.exchange_resource, &exchange)?,
            sharepoint: match cloud.sharepoint {
                Some(value) => Some(secure_url(&format!("{key}.sharepoint"), &value, None)?),
                None => None,
            },
            graph,
            exchange,
            sharepoint_suffix: cloud.sharepoint_suffix,
        };
        clouds.insert(name, cloud);
    }
    Ok(clouds)
}

fn microsoft_settings(raw: RawMicrosoft) -> Result<MicrosoftSettings, ConfigError> {
    positive("microsoft.connect_timeout", raw.connect_timeout)?;
    positive("microsoft.request_timeout", raw.request_timeout)?;
    if raw.retry_attempts == 0 {
        return Err(config_error(
            "invalid configuration key microsoft.retry_attempts: expected at least 1 (1 means no retry)",
        ));
    }
    let manifest = match &raw.permissions_file {
        Some(path) => crate::microsoft::permissions::Manifest::load(path).map_err(|message| {
            config_error(format!(
                "invalid configuration key microsoft.permissions_file: {message}"
            ))
        })?,
        None => builtin_manifest(),
    };
    if raw.max_requests_in_flight == 0 {
        return Err(config_error(
            "invalid configuration key microsoft.max_requests_in_flight: expected at least 1",
        ));
    }
    Ok(MicrosoftSettings {
        client: kodo_microsoft::ClientSettings {
            max_requests_in_flight: raw.max_requests_in_flight,
            connect_timeout: raw.connect_timeout,
            request_timeout: raw.request_timeout,
            retry: crate::microsoft::RetryPolicy {
                max_attempts: raw.retry_attempts,
                max_elapsed: raw.retry_max_elapsed,
                min_delay: raw.retry_min_delay,
                max_delay: raw.retry_max_delay,
            },
            ca_file: raw
                .ca_file
                .map(|path| absolute("microsoft.ca_file", path))
                .transpose()?,
        },
        manifest: Arc::new(manifest),
        permissions_file: raw.permissions_file,
    })
}

fn check_settings(raw: RawChecks) -> Result<CheckSettings, ConfigError> {
    for (key, value) in [
        ("checks.interval", raw.interval),
        ("checks.pickup_interval", raw.pickup_interval),
        ("checks.warning_window", raw.warning_window),
        ("checks.retry_failed_after", raw.retry_failed_after),
        ("checks.failing_alert_after", raw.failing_alert_after),
    ] {
        positive(key, value)?;
    }
    if raw.max_concurrent_checks == 0 || raw.max_checks_per_tenant == 0 {
        return Err(config_error(
            "invalid configuration key checks.max_concurrent_checks / checks.max_checks_per_tenant: expected at least 1",
        ));
    }
    let resources = parse_resources("checks.resources", &raw.resources)?;
    Ok(CheckSettings {
        interval: raw.interval,
        pickup_interval: raw.pickup_interval,
        warning_window: raw.warning_window,
        confirm_delay: raw.confirm_delay,
        retry_failed_after: raw.retry_failed_after,
        failing_alert_after: raw.failing_alert_after,
        max_concurrent_checks: raw.max_concurrent_checks,
        max_checks_per_tenant: raw.max_checks_per_tenant,
        resources,
    })
}

fn alert_settings(
    raw: RawAlerts,
    credentials_directory: Option<&Path>,
) -> Result<AlertSettings, ConfigError> {
    positive("alerts.delivery_interval", raw.delivery_interval)?;
    positive("alerts.resend_interval", raw.resend_interval)?;
    positive("alerts.max_delivery_backoff", raw.max_delivery_backoff)?;
    let mut names = std::collections::BTreeSet::new();
    let mut alertmanagers = Vec::new();
    for (index, sink) in raw.alertmanager.into_iter().enumerate() {
        let key = format!("alerts.alertmanager[{index}]");
        sink_name(&key, &sink.name, &mut names)?;
        let url = if sink.allow_insecure_http {
            http_url(&format!("{key}.url"), &sink.url)?
        } else {
            secure_url(
                &format!("{key}.url"),
                &sink.url,
                Some("allow_insecure_http = true"),
            )?
        };
        let access = sink_access(
            &key,
            &url,
            sink.basic_auth,
            sink.bearer,
            sink.tls,
            credentials_directory,
        )?;
        alertmanagers.push(AlertmanagerSink {
            name: sink.name,
            url,
            allow_insecure_http: sink.allow_insecure_http,
            access,
        });
    }
    let mut webhooks = Vec::new();
    for (index, sink) in raw.webhook.into_iter().enumerate() {
        let key = format!("alerts.webhook[{index}]");
        sink_name(&key, &sink.name, &mut names)?;
        let url = secure_url(&format!("{key}.url"), &sink.url, None)?;
        let secret = webhook_key(
            &key,
            sink.secret_file,
            sink.secret_credential,
            credentials_directory,
        )?;
        let access = sink_access(
            &key,
            &url,
            sink.basic_auth,
            sink.bearer,
            sink.tls,
            credentials_directory,
        )?;
        webhooks.push(WebhookSink {
            name: sink.name,
            url,
            secret,
            access,
        });
    }
    Ok(AlertSettings {
        delivery_interval: raw.delivery_interval,
        resend_interval: raw.resend_interval,
        max_delivery_backoff: raw.max_delivery_backoff,
        alertmanagers,
        webhooks,
    })
}

fn default_prepare_ahead() -> Duration {
    Duration::from_secs(86400)
}

fn default_new_credential() -> String {
    "secret".into()
}

fn rotation_settings(
    raw: RawRotation,
    credentials_directory: Option<&Path>,
) -> Result<RotationSettings, ConfigError> {
    let credential_for_new_organizations =
        crate::domain::CredentialKind::try_from(raw.credential_for_new_organizations.clone())
            .map_err(|_| {
                config_error(format!(
                    "invalid configuration key rotation.credential_for_new_organizations: {:?} (expected \"secret\" or \"certificate\")",
                    raw.credential_for_new_organizations
                ))
            })?;
    for (key, value) in [
        ("rotation.lead_time", raw.lead_time),
        ("rotation.lifetime", raw.lifetime),
        ("rotation.verify_timeout", raw.verify_timeout),
        ("rotation.pickup_interval", raw.pickup_interval),
    ] {
        positive(key, value)?;
    }
    if raw.lifetime > Duration::from_secs(730 * 86400) {
        return Err(config_error(
            "invalid configuration key rotation.lifetime: at most 24 months (730d)",
        ));
    }
    if raw.lead_time >= raw.lifetime {
        return Err(config_error(
            "invalid configuration key rotation.lead_time: must be shorter than rotation.lifetime",
        ));
    }
    let mut deliverers = Vec::new();
    for (index, file) in raw.file.into_iter().enumerate() {
        let key = format!("rotation.file[{index}]");
        let mode = u32::from_str_radix(file.mode.trim_start_matches("0o"), 8)
            .ok()
            .filter(|mode| *mode == 0o600 || *mode == 0o640)
            .ok_or_else(|| {
                config_error(format!(
                    "invalid configuration key {key}.mode: {:?} (expected \"0600\" or \"0640\")",
                    file.mode
                ))
            })?;
        let group = match file.group {
            None => None,
            Some(group) => Some(group_id(&group).ok_or_else(|| {
                config_error(format!(
                    "invalid configuration key {key}.group: no group {group:?}"
                ))
            })?),
        };
        deliverers.push(ScopedDeliverer {
            deliverer: Deliverer::File {
                directory: absolute(&format!("{key}.directory"), file.directory)?,
                mode,
                group,
                pkcs12: secret_source(
                    &format!("{key}.pkcs12_passphrase"),
                    file.pkcs12_passphrase_file,
                    file.pkcs12_passphrase_credential,
                    false,
                    credentials_directory,
                )?,
            },
            organizations: file.organizations,
        });
    }
    for (index, command) in raw.command.into_iter().enumerate() {
        let key = format!("rotation.command[{index}]");
        deliverers.push(ScopedDeliverer {
            deliverer: Deliverer::Command {
                program: absolute(&format!("{key}.program"), command.program)?,
                args: command.args,
                timeout: command.timeout,
            },
            organizations: command.organizations,
        });
    }
    for (index, hook) in raw.webhook.into_iter().enumerate() {
        let key = format!("rotation.webhook[{index}]");
        let url = secure_url(&format!("{key}.url"), &hook.url, None)?;
        let secret = webhook_key(
            &key,
            hook.secret_file,
            hook.secret_credential,
            credentials_directory,
        )?;
        let access = sink_access(
            &key,
            &url,
            hook.basic_auth,
            hook.bearer,
            hook.tls,
            credentials_directory,
        )?;
        deliverers.push(ScopedDeliverer {
            deliverer: Deliverer::Webhook {
                url,
                key: secret,
                access: Box::new(access),
            },
            organizations: hook.organizations,
        });
    }
    Ok(RotationSettings {
        enabled: raw.enabled,
        policy: crate::domain::plan::RotationPolicy {
            lead_time: chrono::Duration::from_std(raw.lead_time)
                .unwrap_or(chrono::Duration::days(30)),
            lifetime: chrono::Duration::from_std(raw.lifetime)
                .unwrap_or(chrono::Duration::days(180)),
        },
        verify_timeout: raw.verify_timeout,
        grace: raw.grace,
        pickup_interval: raw.pickup_interval,
        prepare_ahead: raw.prepare_ahead,
        credential_for_new_organizations,
        deliverers,
    })
}

/// Checks that `expression` is a cron schedule the scheduler accepts: parsed by the
/// scheduler's own library (tokio-cron-scheduler), so what is accepted here runs there.
fn validate_schedule(expression: &str) -> Result<(), String> {
    tokio_cron_scheduler::Job::new_async(expression, |_, _| Box::pin(async {}))
        .map(|_| ())
        .map_err(|error| format!("{expression:?} is not a valid schedule ({error})"))
}

fn parse_resources(
    key: &str,
    names: &[String],
) -> Result<Vec<crate::microsoft::Resource>, ConfigError> {
    let mut resources = Vec::new();
    for name in names {
        let resource = crate::microsoft::Resource::parse(name).ok_or_else(|| {
            config_error(format!("invalid configuration key {key}: {name:?} is not a resource (graph, exchange, sharepoint)"))
        })?;
        if !resources.contains(&resource) {
            resources.push(resource);
        }
    }
    Ok(resources)
}

/// A group's id from its name (or a number), read from /etc/group.
fn group_id(group: &str) -> Option<u32> {
    if let Ok(gid) = group.parse::<u32>() {
        return Some(gid);
    }
    std::fs::read_to_string("/etc/group")
        .ok()?
        .lines()
        .find_map(|line| {
            let mut fields = line.split(':');
            let name = fields.next()?;
            let gid = fields.nth(1)?;
            (name == group).then(|| gid.parse().ok()).flatten()
        })
}

/// An http(s) URL, or an error naming the key.
fn http_url(key: &str, value: &str) -> Result<Url, ConfigError> {
    Url::parse(value)
        .ok()
        .filter(|url| matches!(url.scheme(), "http" | "https"))
        .ok_or_else(|| {
            config_error(format!(
                "invalid configuration key {key}: {value:?} is not an http(s) URL"
            ))
        })
}

/// A URL that carries secrets (a signed webhook, a new client secret, alerts): https, or
/// plain http only to a loopback address (the Microsoft endpoints' rule). `opt_in` names
/// the setting that allows plain http elsewhere, where there is one.
fn secure_url(key: &str, value: &str, opt_in: Option<&str>) -> Result<Url, ConfigError> {
    let url = http_url(key, value)?;
    if url.scheme() == "https" || is_loopback(&url) {
        return Ok(url);
    }
    let shown = redact_url(&url);
    Err(config_error(match opt_in {
        Some(setting) => format!(
            "invalid configuration key {key}: {shown} must use https (plain http only to loopback, or with {setting} on this sink)"
        ),
        None => format!(
            "invalid configuration key {key}: {shown} must use https (plain http is allowed only for loopback addresses)"
        ),
    }))
}

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(address)) => address.is_loopback(),
        Some(url::Host::Ipv6(address)) => address.is_loopback(),
        Some(url::Host::Domain(domain)) => domain == "localhost",
        None => false,
    }
}

/// A URL as it may be printed or logged: no user name or password, and no query value
/// (webhook tokens, `?password=`), only the query's keys.
pub fn redact_url(url: &Url) -> String {
    let mut shown = url.clone();
    if !shown.username().is_empty() || shown.password().is_some() {
        let _ = shown.set_username("REDACTED");
        let _ = shown.set_password(None);
    }
    redact_url_query(&shown)
}

/// The URL with its query values redacted (its user name kept: a database role is no
/// secret).
fn redact_url_query(url: &Url) -> String {
    let mut shown = url.clone();
    if shown.query().is_some() {
        let keys: Vec<String> = shown
            .query_pairs()
            .map(|(key, _)| format!("{key}=REDACTED"))
            .collect();
        shown.set_query(Some(&keys.join("&")));
    }
    shown.to_string()
}

/// A webhook's HMAC key: required, as `secret_file` or `secret_credential`.
fn webhook_key(
    key: &str,
    file: Option<PathBuf>,
    credential: Option<String>,
    credentials_directory: Option<&Path>,
) -> Result<SecretSource, ConfigError> {
    secret_source(&format!("{key}.secret"), file, credential, false, credentials_directory)?.ok_or_else(|| {
        config_error(format!(
            "invalid configuration key {key}: a webhook needs secret_file or secret_credential (its HMAC key)"
        ))
    })
}

/// A sink's authentication (`basic_auth` or `bearer`, not both) and TLS settings (`tls`:
/// only for an https URL; a client certificate needs its key).
fn sink_access(
    key: &str,
    url: &Url,
    basic_auth: Option<RawBasicAuth>,
    bearer: Option<RawBearer>,
    tls: Option<RawTls>,
    credentials_directory: Option<&Path>,
) -> Result<SinkAccess, ConfigError> {
    let required = |base: String, file, credential, what: &str| {
        secret_source(&base, file, credential, false, credentials_directory)?.ok_or_else(|| {
            config_error(format!(
                "invalid configuration key {base}: {what} needs {base}_file or {base}_credential"
            ))
        })
    };
    let auth = match (basic_auth, bearer) {
        (Some(_), Some(_)) => {
            return Err(config_error(format!(
                "invalid configuration key {key}: basic_auth and bearer exclude each other"
            )));
        }
        (Some(basic), None) => {
            if basic.username.is_empty() || basic.username.contains(':') {
                return Err(config_error(format!(
                    "invalid configuration key {key}.basic_auth.username: not empty and without ':'"
                )));
            }
            Some(SinkAuth::Basic {
                username: basic.username,
                password: required(
                    format!("{key}.basic_auth.password"),
                    basic.password_file,
                    basic.password_credential,
                    "basic_auth",
                )?,
            })
        }
        (None, Some(bearer)) => Some(SinkAuth::Bearer {
            token: required(
                format!("{key}.bearer.token"),
                bearer.token_file,
                bearer.token_credential,
                "bearer",
            )?,
        }),
        (None, None) => None,
    };
    let tls = match tls {
        None => None,
        Some(_) if url.scheme() != "https" => {
            return Err(config_error(format!(
                "invalid configuration key {key}.tls: the sink's URL is not https"
            )));
        }
        Some(tls) => {
            let ca_file = match tls.ca_file {
                Some(path) => Some(absolute(&format!("{key}.tls.ca_file"), path)?),
                None => None,
            };
            let has_key = tls.key_file.is_some() || tls.key_credential.is_some();
            let client_certificate = match tls.certificate_file {
                Some(path) => Some(ClientCertificate {
                    certificate_file: absolute(&format!("{key}.tls.certificate_file"), path)?,
                    key: required(
                        format!("{key}.tls.key"),
                        tls.key_file,
                        tls.key_credential,
                        "a client certificate",
                    )?,
                }),
                None if has_key => {
                    return Err(config_error(format!(
                        "invalid configuration key {key}.tls: a client key needs its certificate_file"
                    )));
                }
                None => None,
            };
            Some(SinkTls {
                ca_file,
                client_certificate,
            })
        }
    };
    Ok(SinkAccess { auth, tls })
}

fn sink_name(
    key: &str,
    name: &str,
    seen: &mut std::collections::BTreeSet<String>,
) -> Result<(), ConfigError> {
    let valid = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'));
    if !valid {
        return Err(config_error(format!(
            "invalid configuration key {key}.name: {name:?} (letters, digits, '-', '_')"
        )));
    }
    if !seen.insert(name.to_string()) {
        return Err(config_error(format!(
            "invalid configuration key {key}.name: {name:?} is used by another sink"
        )));
    }
    Ok(())
}

fn positive(key: &str, value: Duration) -> Result<(), ConfigError> {
    if value.is_zero() {
        return Err(config_error(format!(
            "invalid configuration key {key}: expected a duration greater than zero"
        )));
    }
    Ok(())
}

fn absolute(key: &str, path: PathBuf) -> Result<PathBuf, ConfigError> {
    if !path.is_absolute() {
        return Err(config_error(format!(
            "invalid configuration key {key}: {} is not an absolute path",
            path.display()
        )));
    }
    Ok(path)
}

fn credential_name(key: &str, name: String) -> Result<String, ConfigError> {
    let valid = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && !name.starts_with('.');
    if !valid {
        return Err(config_error(format!(
            "invalid configuration key {key}: {name:?} is not a systemd credential name"
        )));
    }
    Ok(name)
}

/// Which of `<base>_credential` and `<base>_file` to use: the systemd credential when the
/// service manager provides it (the daemon under its unit), else the file (the same
/// configuration used by an operator's CLI commands, run as root). A credential that is only
/// a built-in default (`credential_is_default`) counts only when systemd provides it.
fn secret_source(
    base: &str,
    file: Option<PathBuf>,
    credential: Option<String>,
    credential_is_default: bool,
    credentials_directory: Option<&Path>,
) -> Result<Option<SecretSource>, ConfigError> {
    let directory = credentials_directory.map(Path::to_path_buf);
    let credential_key = format!("{base}_credential");
    let credential = match credential.filter(|name| !name.is_empty()) {
        Some(name) => Some(credential_name(&credential_key, name)?),
        None => None,
    };
    if let Some(name) = &credential
        && directory
            .as_ref()
            .is_some_and(|directory| directory.join(name).exists())
    {
        return Ok(Some(SecretSource::Credential {
            key: credential_key,
            name: name.clone(),
            directory,
        }));
    }
    if let Some(path) = file {
        let key = format!("{base}_file");
        return Ok(Some(SecretSource::File {
            path: absolute(&key, path)?,
            key,
        }));
    }
    Ok(credential
        .filter(|_| !credential_is_default)
        .map(|name| SecretSource::Credential {
            key: credential_key,
            name,
            directory,
        }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::microsoft::Resource;
    use crate::microsoft::permissions::NeededFor;
    use uuid::Uuid;

    #[test]
    fn the_builtin_manifest_holds_the_seed_and_what_it_lacks() {
        let manifest = builtin_manifest();
        let backup = manifest.required(&[NeededFor::Backup]);
        // The seed's 46 rows: 40 Microsoft Graph (Calendars.ReadWrite moved there), 1 Exchange,
        // 5 SharePoint; TeamsApp.ReadWrite.All is no app role Microsoft publishes, so 45.
        assert_eq!(backup.len(), 45);
        let count = |resource| backup.iter().filter(|(r, _)| *r == resource).count();
        assert_eq!(
            (
                count(Resource::Graph),
                count(Resource::Exchange),
                count(Resource::SharePoint)
            ),
            (39, 1, 5)
        );
        let calendars = (
            Resource::Graph,
            "ef54d2bf-783f-4e0f-bca1-3210c0444d99".parse().unwrap(),
        );
        assert_eq!(manifest.name(&calendars), Some("Calendars.ReadWrite"));
        let rotation = manifest.required(&[NeededFor::Rotation]);
        let owned_by = (
            Resource::Graph,
            "18a4783c-866b-4cc7-a460-3d5e5662c884".parse().unwrap(),
        );
        assert_eq!(rotation.into_iter().collect::<Vec<_>>(), vec![owned_by]);
        // Same GUID, different resources: both required, told apart by resource.
        let user_rw: Uuid = "741f803b-c850-494e-b5df-cde7c675a1ca".parse().unwrap();
        assert!(
            backup.contains(&(Resource::Graph, user_rw))
                && backup.contains(&(Resource::SharePoint, user_rw))
        );
    }

    fn load(toml: &str, environment: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("config.toml");
        std::fs::write(&path, toml).unwrap();
        let environment = environment
            .iter()
            .map(|(name, value)| (name.to_string(), value.to_string()))
            .collect();
        Settings::load_with_environment(
            &ConfigLocation {
                path,
                explicit: true,
            },
            environment,
        )
    }

    fn error(toml: &str, environment: &[(&str, &str)]) -> String {
        load(toml, environment).unwrap_err().to_string()
    }

    #[test]
    fn sink_authentication_and_tls_are_checked_when_loaded() {
        let sink = |access: &str| {
            format!(
                "[[alerts.alertmanager]]\nname = \"am\"\nurl = \"https://am.example/\"\n{access}\n"
            )
        };
        let both = error(
            &sink(
                "basic_auth = { username = \"u\", password_file = \"/p\" }\nbearer = { token_file = \"/t\" }",
            ),
            &[],
        );
        assert!(
            both.contains("basic_auth and bearer exclude each other"),
            "{both}"
        );
        let no_password = error(&sink("basic_auth = { username = \"u\" }"), &[]);
        assert!(
            no_password.contains("alerts.alertmanager[0].basic_auth.password: basic_auth needs"),
            "{no_password}"
        );
        let key_alone = error(&sink("tls = { key_file = \"/k\" }"), &[]);
        assert!(
            key_alone.contains("a client key needs its certificate_file"),
            "{key_alone}"
        );
        let no_key = error(&sink("tls = { certificate_file = \"/c\" }"), &[]);
        assert!(
            no_key.contains("tls.key: a client certificate needs"),
            "{no_key}"
        );
        let plain = error(
            "[[alerts.alertmanager]]\nname = \"am\"\nurl = \"http://127.0.0.1:9093/\"\ntls = { ca_file = \"/ca\" }\n",
            &[],
        );
        assert!(plain.contains("the sink's URL is not https"), "{plain}");
        let settings = load(
            &sink("basic_auth = { username = \"u\", password_file = \"/p\" }\ntls = { ca_file = \"/ca\", certificate_file = \"/c\", key_file = \"/k\" }"),
            &[],
        )
        .unwrap();
        let access = &settings.alerts.alertmanagers[0].access;
        assert!(matches!(&access.auth, Some(SinkAuth::Basic { username, .. }) if username == "u"));
        assert_eq!(
            serde_json::to_value(access).unwrap()["tls"]["client_certificate"]["key"],
            "<redacted: file /k>",
            "config check shows where the key is, never what"
        );
    }

    #[test]
    fn defaults_alone_are_valid() {
        let settings = load("", &[]).unwrap();
        assert_eq!(settings.http.listen.to_string(), "127.0.0.1:9787");
        assert_eq!(settings.daemon.shutdown_timeout, Duration::from_secs(20));
        assert_eq!(settings.clouds.len(), 4);
    }

    #[test]
    fn environment_overrides_file_which_overrides_defaults() {
        let settings = load(
            "[log]\nlevel = \"debug\"\n[http]\nlisten = \"127.0.0.1:1111\"\n",
            &[("KODO_ACCESS__HTTP__LISTEN", "127.0.0.1:2222")],
        )
        .unwrap();
        assert_eq!(settings.log.level, "debug");
        assert_eq!(settings.http.listen.to_string(), "127.0.0.1:2222");
    }

    #[test]
    fn bad_keys_types_and_values_name_the_key() {
        let cases = [
            ("[database]\nbogus = 1\n", "database"),
            (
                "[database]\nmax_connections = \"many\"\n",
                "database.max_connections",
            ),
            ("[http]\nlisten = \"everywhere\"\n", "http.listen"),
            (
                "[daemon]\nshutdown_timeout = \"soon\"\n",
                "daemon.shutdown_timeout",
            ),
            (
                "[jobs.housekeeping]\nschedule = \"whenever\"\n",
                "jobs.housekeeping.schedule",
            ),
            ("[log]\nformat = \"xml\"\n", "log.format"),
            ("[database]\nurl = \"mysql://x/y\"\n", "database.url"),
            (
                "[crypto]\nmaster_key_file = \"relative/key\"\n",
                "crypto.master_key_file",
            ),
            (
                "[clouds.lab]\nauthority = \"http://login.example\"\ngraph = \"https://g\"\nexchange = \"https://e\"\nsharepoint_suffix = \"s\"\n",
                "clouds.lab.authority",
            ),
            ("[surprise]\nx = 1\n", "surprise"),
        ];
        for (toml, key) in cases {
            let message = error(toml, &[]);
            assert!(
                message.contains(key),
                "{toml:?} gave {message:?}, expected it to name {key}"
            );
        }
        let message = error("", &[("KODO_ACCESS__DATABASE__MAX_CONNECTIONS", "lots")]);
        assert!(message.contains("database.max_connections"), "{message}");
    }

    #[test]
    fn loopback_clouds_may_use_http() {
        let settings = load(
            "[clouds.sim]\nauthority = \"http://127.0.0.1:8400\"\ngraph = \"http://127.0.0.1:8400\"\nexchange = \"http://localhost:8400\"\nsharepoint_suffix = \"sharepoint.sim\"\n",
            &[],
        )
        .unwrap();
        assert_eq!(
            settings.clouds["sim"].graph.as_str(),
            "http://127.0.0.1:8400/"
        );
    }

    #[test]
    fn secret_files_readable_by_others_are_refused() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("secret");
        std::fs::write(&path, "hunter2\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let message = read_secret_file(&path).unwrap_err();
        assert!(message.contains("accessible to other users"), "{message}");
        assert!(!message.contains("hunter2"));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        use secrecy::ExposeSecret;
        assert_eq!(read_secret_file(&path).unwrap().expose_secret(), "hunter2");
    }

    #[test]
    fn a_provided_credential_wins_over_the_file_and_the_file_serves_the_cli() {
        let credentials = tempfile::tempdir().unwrap();
        std::fs::write(credentials.path().join("db-pw"), "x").unwrap();
        std::fs::set_permissions(
            credentials.path().join("db-pw"),
            std::fs::Permissions::from_mode(0o400),
        )
        .unwrap();
        let file = || Some(PathBuf::from("/etc/kodo-access/db-pw"));
        let credential = || Some("db-pw".to_string());
        // Under systemd the credential is there.
        let source = secret_source(
            "database.password",
            file(),
            credential(),
            false,
            Some(credentials.path()),
        )
        .unwrap();
        assert!(
            matches!(source, Some(SecretSource::Credential { .. })),
            "{source:?}"
        );
        use secrecy::ExposeSecret;
        assert_eq!(source.unwrap().read().unwrap().expose_secret(), "x");
        // From an operator's shell there is no $CREDENTIALS_DIRECTORY: the file is used.
        let source = secret_source("database.password", file(), credential(), false, None).unwrap();
        assert!(
            matches!(source, Some(SecretSource::File { .. })),
            "{source:?}"
        );
        // A default credential name alone, not provided, means "not configured".
        assert_eq!(
            secret_source(
                "crypto.master_key",
                None,
                Some("master-key".into()),
                true,
                None
            )
            .unwrap(),
            None
        );
        // An explicit one is kept, so reading it explains what is missing.
        let explicit = secret_source("database.password", None, credential(), false, None)
            .unwrap()
            .unwrap();
        let error = explicit.read().unwrap_err().to_string();
        assert!(
            error.contains("database.password_credential")
                && error.contains("CREDENTIALS_DIRECTORY"),
            "{error}"
        );
    }

    #[test]
    fn redacted_output_hides_the_database_password() {
        let settings = load(
            "[database]\nurl = \"postgres://kodo:s3cr3t-pw@db.example/kodo\"\n",
            &[],
        )
        .unwrap();
        let text = settings.redacted();
        assert!(!text.contains("s3cr3t-pw"), "{text}");
        assert!(text.contains("REDACTED"), "{text}");
    }

    #[test]
    fn config_check_shows_every_section_and_no_url_credential_or_query_value() {
        let directory = tempfile::tempdir().unwrap();
        let key = directory.path().join("key");
        std::fs::write(&key, "k".repeat(40)).unwrap();
        std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .unwrap();
        let key = key.display();
        let settings = load(
            &format!(
                "[database]\nurl = \"postgres://kodo:pw-db@db.example/kodo?password=q-db\"\n\n\
                 [[alerts.alertmanager]]\nname = \"am\"\nurl = \"https://u-am:pw-am@am.example/?token=q-am\"\n\n\
                 [[alerts.webhook]]\nname = \"hook\"\nurl = \"https://u-wh:pw-wh@hook.example/?token=q-wh\"\nsecret_file = \"{key}\"\n\n\
                 [[rotation.webhook]]\nname = \"backup\"\nurl = \"https://u-rw:pw-rw@backup.example/?token=q-rw\"\nsecret_file = \"{key}\"\n"
            ),
            &[],
        )
        .unwrap();
        let text = settings.redacted();
        for leak in [
            "pw-db", "q-db", "u-am", "pw-am", "q-am", "u-wh", "pw-wh", "q-wh", "u-rw", "pw-rw",
            "q-rw", "kkkk",
        ] {
            assert!(!text.contains(leak), "{leak} in\n{text}");
        }
        let shown: toml::Table = toml::from_str(
            text.lines()
                .filter(|l| !l.starts_with('#'))
                .collect::<Vec<_>>()
                .join("\n")
                .as_str(),
        )
        .unwrap();
        let sections: Vec<&str> = shown.keys().map(String::as_str).collect();
        assert_eq!(
            sections,
            [
                "alerts",
                "checks",
                "clouds",
                "crypto",
                "daemon",
                "database",
                "http",
                "jobs",
                "log",
                "microsoft",
                "rotation"
            ],
            "every section of the file, [rotation] included"
        );
        assert_eq!(
            shown["rotation"]["deliverers"][0]["key"].as_str(),
            Some(format!("<redacted: file {key}>").as_str())
        );
        assert_eq!(shown["microsoft"]["retry_attempts"].as_integer(), Some(4));
        assert_eq!(shown["rotation"]["lead_time"].as_str(), Some("30d"));
        // Unset secrets say so instead of vanishing.
        assert_eq!(shown["database"]["password"].as_str(), Some("<none>"));
        assert_eq!(
            shown["crypto"]["master_key"].as_str(),
            Some("<not configured>")
        );
    }
}
