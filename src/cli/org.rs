//! `kodo-access org …`: register, list, show, change and remove organizations.
//! Secrets come from standard input or a file, never from an argument.

use std::io::{IsTerminal, Read};
use std::path::{Path, PathBuf};

use clap::{Subcommand, ValueEnum};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use sqlx::PgPool;

use super::Output;
use crate::config::Settings;
use crate::crypto::Keyring;
use crate::domain::{ClientSecret, InputError, OrgRef, SecretKeyId, input_error};
use crate::registry::{
    CertificateInput, CredentialInput, RawLabels, RawOrganization, Registry, SecretInput,
    cli_actor, parse_expiry,
};
use crate::store;

#[derive(Debug, Subcommand)]
pub enum OrgCommand {
    /// Register an organization. The client secret is read from standard input
    /// (prompted for on a terminal) or from --secret-file.
    Add(AddArgs),
    /// List organizations.
    List {
        #[arg(long, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
    /// Show one organization, its credentials and its state.
    Show {
        org: String,
        #[arg(long, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
    /// Replace an organization's client secret (read like `org add` reads it).
    SetSecret {
        org: String,
        #[command(flatten)]
        secret: SecretArgs,
    },
    /// Pause monitoring of an organization (e.g. during a migration).
    Disable { org: String },
    /// Resume monitoring of an organization.
    Enable { org: String },
    /// Remove an organization and its stored secrets (the audit log keeps its history).
    Remove {
        org: String,
        /// Confirm the removal.
        #[arg(long)]
        yes: bool,
    },
    /// Change what is checked: the resources, the SharePoint host.
    Set(SetArgs),
    /// Stop alert deliveries for an organization for a while (checks and state go on).
    Silence {
        org: String,
        /// How long, e.g. 4h or 2d.
        #[arg(long = "for", value_parser = humantime::parse_duration)]
        duration: std::time::Duration,
        #[arg(long)]
        reason: String,
    },
    /// End an organization's silence.
    Unsilence { org: String },
    /// Register many organizations from a CSV or JSON file: all of them, or none.
    Import {
        file: PathBuf,
        /// The file's format; by default taken from its extension.
        #[arg(long, value_enum)]
        format: Option<ImportFormat>,
    },
}

/// The registry as the CLI uses it: acting as the operator who runs the command.
fn cli_registry<'a>(pool: &'a PgPool, keyring: &'a Keyring) -> Registry<'a> {
    Registry {
        pool,
        keyring,
        actor: cli_actor(),
    }
}

/// The flags of `org add`.
#[derive(Debug, clap::Args)]
pub struct AddArgs {
    #[arg(long)]
    pub name: String,
    /// Directory (tenant) id, a GUID.
    #[arg(long)]
    pub tenant_id: String,
    /// Application (client) id, a GUID.
    #[arg(long)]
    pub client_id: String,
    /// global, usgov, usdod, china or a cloud defined in the configuration.
    #[arg(long, default_value = "global")]
    pub cloud: String,
    /// The tenant's SharePoint Online host, e.g. contoso.sharepoint.com.
    #[arg(long)]
    pub sharepoint_host: Option<String>,
    /// A key=value tag; repeat for several.
    #[arg(long = "label", value_name = "KEY=VALUE")]
    pub labels: Vec<String>,
    #[command(flatten)]
    pub secret: SecretArgs,
}

/// The flags of `org set`.
#[derive(Debug, clap::Args)]
pub struct SetArgs {
    pub org: String,
    /// Resources to check, comma-separated (graph, exchange, sharepoint); "default"
    /// for the configuration's checks.resources.
    #[arg(long, value_name = "LIST")]
    pub resources: Option<String>,
    /// The tenant's SharePoint Online host.
    #[arg(long)]
    pub sharepoint_host: Option<String>,
    /// Whether kodo-access rotates this organization's secret (on, off).
    #[arg(long, value_name = "on|off")]
    pub rotation: Option<String>,
    /// Rotate this organization's secret when less than this is left (e.g. 45d), or
    /// "default" for the configuration's rotation.lead_time.
    #[arg(long, value_name = "DURATION|default")]
    pub rotation_lead_time: Option<String>,
    /// Move the organization to this kind of credential: `certificate` makes the rotations
    /// job (or `kodo-access rotate ORG`, at once) add one through Microsoft Graph with the
    /// current secret's rights, verify, deliver and activate it.
    #[arg(long, value_name = "secret|certificate")]
    pub credential: Option<String>,
    /// Whether a secret replaced by a certificate is removed from the app after the grace
    /// period (on, off; off by default: something else may still use it).
    #[arg(long, value_name = "on|off")]
    pub remove_secret_after_grace: Option<String>,
}

/// An `on`/`off` flag's value.
fn on_off(flag: &str, value: Option<&str>) -> anyhow::Result<Option<bool>> {
    match value {
        None => Ok(None),
        Some("on") => Ok(Some(true)),
        Some("off") => Ok(Some(false)),
        Some(other) => Err(input_error(format!("--{flag}: {other:?} (expected on or off)")).into()),
    }
}

#[derive(Debug, clap::Args)]
pub struct SecretArgs {
    /// Read the client secret from this file instead of standard input.
    #[arg(long, value_name = "PATH")]
    secret_file: Option<PathBuf>,
    /// Microsoft's id of the secret (the portal's "Secret ID"), if known.
    #[arg(long, value_name = "GUID")]
    secret_id: Option<String>,
    /// When the secret expires (2027-05-31 or an RFC 3339 time), if known.
    #[arg(long, value_name = "DATE")]
    secret_expires: Option<String>,
    /// Use a certificate instead of a client secret: the certificate (PEM or DER) as
    /// registered on the app. Needs --private-key-file.
    #[arg(long, value_name = "PATH", requires = "private_key_file", conflicts_with_all = ["secret_file", "secret_id", "secret_expires"])]
    certificate_file: Option<PathBuf>,
    /// The certificate's RSA private key, unencrypted PEM (PKCS#1 or PKCS#8), readable
    /// only by its owner like a secret file.
    #[arg(long, value_name = "PATH", requires = "certificate_file")]
    private_key_file: Option<PathBuf>,
    /// Or the certificate and its key in one PKCS#12 file (.pfx/.p12), readable only by
    /// its owner like a secret file.
    #[arg(long, value_name = "PATH", conflicts_with_all = ["secret_file", "secret_id", "secret_expires", "certificate_file"])]
    pkcs12_file: Option<PathBuf>,
    /// The file holding the PKCS#12 file's passphrase (without it: an empty passphrase).
    #[arg(long, value_name = "PATH", requires = "pkcs12_file")]
    pkcs12_passphrase_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ImportFormat {
    Csv,
    Json,
}

fn read_secret(args: &SecretArgs) -> anyhow::Result<SecretString> {
    if let Some(path) = &args.secret_file {
        return crate::config::read_secret_file(path)
            .map_err(|message| input_error(format!("--secret-file: {message}")).into());
    }
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        let text = rpassword::prompt_password("client secret (input hidden): ")?;
        return Ok(SecretString::from(text));
    }
    let mut text = String::new();
    stdin.lock().read_to_string(&mut text).map_err(|error| {
        anyhow::anyhow!("reading the client secret from standard input: {error}")
    })?;
    if text.ends_with('\n') {
        text.pop();
        if text.ends_with('\r') {
            text.pop();
        }
    }
    Ok(SecretString::from(text))
}

/// The certificate and key of `--certificate-file`/`--private-key-file`, checked to
/// belong together (RSA, 2048 bits or more); `None` without them.
fn certificate_input(args: &SecretArgs) -> anyhow::Result<Option<CertificateInput>> {
    let read = match (
        &args.certificate_file,
        &args.private_key_file,
        &args.pkcs12_file,
    ) {
        (Some(certificate_file), Some(key_file), _) => {
            crate::registry::certificate_pair(certificate_file, key_file)
        }
        (_, _, Some(pkcs12)) => {
            crate::registry::pkcs12_certificate(pkcs12, args.pkcs12_passphrase_file.as_deref())
        }
        _ => return Ok(None),
    };
    read.map(Some).map_err(|error| {
        input_error(format!(
            "--{}: {}",
            error.field.replace('_', "-"),
            error.error.0
        ))
        .into()
    })
}

/// The credential the flags name: a certificate and key, or a secret.
fn credential_input(args: &SecretArgs) -> anyhow::Result<CredentialInput> {
    match certificate_input(args)? {
        Some(certificate) => Ok(CredentialInput::Certificate(certificate)),
        None => Ok(CredentialInput::Secret(secret_input(args)?)),
    }
}

fn secret_input(args: &SecretArgs) -> anyhow::Result<SecretInput> {
    // Validate the flags before reading the secret, so a typo does not cost a paste.
    let key_id = args
        .secret_id
        .as_deref()
        .map(SecretKeyId::parse)
        .transpose()?;
    let expires = args
        .secret_expires
        .as_deref()
        .map(parse_expiry)
        .transpose()?;
    let secret = ClientSecret::parse(read_secret(args)?)?;
    Ok(SecretInput {
        secret,
        key_id,
        expires,
    })
}

pub async fn execute(settings: Settings, command: &OrgCommand) -> anyhow::Result<()> {
    let clouds: Vec<String> = settings.clouds.keys().cloned().collect();
    match command {
        OrgCommand::List { output } => {
            let pool = store::connect(&settings.database).await?;
            list(&pool, *output).await
        }
        OrgCommand::Show { org, output } => {
            let pool = store::connect(&settings.database).await?;
            show(&pool, &settings.rotation, &OrgRef::parse(org), *output).await
        }
        OrgCommand::Add(args) => add(&settings, &clouds, args).await,
        OrgCommand::SetSecret { org, secret } => set_secret(&settings, org, secret).await,
        OrgCommand::Disable { org } => set_enabled(&settings, org, false).await,
        OrgCommand::Enable { org } => set_enabled(&settings, org, true).await,
        OrgCommand::Remove { org, yes } => remove(&settings, org, *yes).await,
        OrgCommand::Set(args) => set(&settings, args).await,
        OrgCommand::Silence {
            org,
            duration,
            reason,
        } => silence(&settings, org, *duration, reason).await,
        OrgCommand::Unsilence { org } => {
            let pool = store::connect(&settings.database).await?;
            let keyring = Keyring::load(&settings.crypto)?;
            let registry = cli_registry(&pool, &keyring);
            registry.silence(&OrgRef::parse(org), None, None).await?;
            println!("{org}: alerts no longer silenced");
            Ok(())
        }
        OrgCommand::Import { file, format } => {
            let keyring = Keyring::load(&settings.crypto)?;
            let default = settings.rotation.credential_for_new_organizations;
            let inputs = read_import(file, *format, &clouds)?
                .into_iter()
                .map(|(position, input)| (position, input.with_default_credential(default)))
                .collect();
            let pool = store::connect(&settings.database).await?;
            let registry = cli_registry(&pool, &keyring);
            let ids = registry.import(inputs).await?;
            println!(
                "imported {} organization(s) from {}",
                ids.len(),
                file.display()
            );
            Ok(())
        }
    }
}

/// `org set-secret`: stores a new secret for an organization.
async fn set_secret(settings: &Settings, org: &str, secret: &SecretArgs) -> anyhow::Result<()> {
    let keyring = Keyring::load(&settings.crypto)?;
    let pool = store::connect(&settings.database).await?;
    let reference = OrgRef::parse(org);
    // Fail on an unknown organization before asking for the secret.
    if store::organizations::find(&mut *pool.acquire().await?, &reference)
        .await?
        .is_none()
    {
        return Err(input_error(format!("no organization {reference}")).into());
    }
    let credential = credential_input(secret)?;
    let registry = cli_registry(&pool, &keyring);
    let kind = match &credential {
        CredentialInput::Secret(_) => "secret".to_string(),
        CredentialInput::Certificate(input) => {
            format!("certificate {}", input.certificate.thumbprint_sha1_hex())
        }
    };
    let credential_id = registry.set_secret(&reference, credential).await?;
    println!("stored a new {kind} for {reference} (credential {credential_id})");
    Ok(())
}

/// `org enable` / `org disable`.
async fn set_enabled(settings: &Settings, org: &str, enable: bool) -> anyhow::Result<()> {
    let keyring = Keyring::load(&settings.crypto)?;
    let pool = store::connect(&settings.database).await?;
    let registry = cli_registry(&pool, &keyring);
    let reference = OrgRef::parse(org);
    let changed = registry.set_enabled(&reference, enable).await?;
    let word = if enable { "enabled" } else { "disabled" };
    if changed {
        println!("{reference} is now {word}");
    } else {
        println!("{reference} was already {word}");
    }
    Ok(())
}

/// `org silence`: no alerts for the organization until then.
async fn silence(
    settings: &Settings,
    org: &str,
    duration: std::time::Duration,
    reason: &str,
) -> anyhow::Result<()> {
    let pool = store::connect(&settings.database).await?;
    let keyring = Keyring::load(&settings.crypto)?;
    let registry = cli_registry(&pool, &keyring);
    let until = chrono::Utc::now()
        + chrono::Duration::from_std(duration).map_err(|_| input_error("--for: too long"))?;
    registry
        .silence(&OrgRef::parse(org), Some(until), Some(reason))
        .await?;
    println!(
        "{org}: alerts silenced until {}",
        until.format("%Y-%m-%d %H:%M UTC")
    );
    Ok(())
}

/// `org add`: registers one organization with its secret.
async fn add(settings: &Settings, clouds: &[String], args: &AddArgs) -> anyhow::Result<()> {
    let AddArgs {
        name,
        tenant_id,
        client_id,
        cloud,
        sharepoint_host,
        labels,
        secret,
    } = args;
    let keyring = Keyring::load(&settings.crypto)?;
    let credential = credential_input(secret)?;
    let raw = RawOrganization {
        name: name.clone(),
        tenant_id: tenant_id.clone(),
        client_id: client_id.clone(),
        // Checked already in secret_input; RawOrganization only needs it present.
        secret: Some(SecretString::from("x")),
        cloud: Some(cloud.clone()),
        sharepoint_host: sharepoint_host.clone(),
        labels: Some(RawLabels::List(labels.clone())),
        secret_id: None,
        secret_expires: None,
        certificate_file: None,
        private_key_file: None,
        pkcs12_file: None,
        pkcs12_passphrase_file: None,
    };
    let mut input = raw.parse(clouds).map_err(|error| {
        input_error(format!(
            "--{}: {}",
            error.field.replace('_', "-"),
            error.error.0
        ))
    })?;
    input.credential = credential;
    let input = input.with_default_credential(settings.rotation.credential_for_new_organizations);
    let pool = store::connect(&settings.database).await?;
    let registry = cli_registry(&pool, &keyring);
    let name = input.name.clone();
    let id = registry.add(input).await?;
    println!("added organization {name} ({id})");
    Ok(())
}

/// `org remove`: removes the organization and takes back what was delivered where it can.
async fn remove(settings: &Settings, org: &str, yes: bool) -> anyhow::Result<()> {
    let reference = OrgRef::parse(org);
    if !yes {
        return Err(input_error(format!(
            "refusing to remove organization {reference} without --yes (its stored secrets are deleted; the audit log keeps its history)"
        ))
        .into());
    }
    let keyring = Keyring::load(&settings.crypto)?;
    let pool = store::connect(&settings.database).await?;
    let registry = cli_registry(&pool, &keyring);
    let name = match registry.remove(&reference).await? {
        crate::registry::Removal::Now(removed) => {
            println!("removed organization {} ({})", removed.name, removed.id);
            eprintln!(
                "note: the app's secrets stay valid in tenant {} until they expire or an admin removes them (Entra admin center: App registrations, client id {}, Certificates & secrets)",
                removed.tenant_id, removed.client_id
            );
            removed.name
        }
        // Repeated (the first removal may have died before the files below).
        crate::registry::Removal::Earlier { name } => {
            println!("organization {name} was already removed");
            name
        }
    };
    // What the backup server was handed: a delivered file is removed; a copy
    // handed to a command or a webhook is out of reach, and that is said loudly.
    for deliverer in settings.rotation.deliverers_for(&name) {
        match crate::rotation::deliver::withdraw(&deliverer, &name) {
            Ok(Some(done)) => println!("{done}"),
            Ok(None) => {}
            Err(kept) => eprintln!("warning: {kept}"),
        }
    }
    Ok(())
}

/// `org set`: changes what is checked and how the secret is rotated.
async fn set(settings: &Settings, args: &SetArgs) -> anyhow::Result<()> {
    let SetArgs {
        org,
        resources,
        sharepoint_host,
        rotation,
        rotation_lead_time,
        credential,
        remove_secret_after_grace,
    } = args;
    let credential = match credential.as_deref() {
        None => None,
        Some(text) => Some(
            crate::domain::CredentialKind::try_from(text.to_string()).map_err(|_| {
                input_error(format!(
                    "--credential: {text:?} (expected secret or certificate)"
                ))
            })?,
        ),
    };
    let remove_secret_after_grace = on_off(
        "remove-secret-after-grace",
        remove_secret_after_grace.as_deref(),
    )?;
    let pool = store::connect(&settings.database).await?;
    let registry_keyring = Keyring::load(&settings.crypto)?;
    let registry = cli_registry(&pool, &registry_keyring);
    let resources = match resources.as_deref() {
        None => None,
        Some("default") => Some(None),
        Some(list) => {
            let mut parsed = Vec::new();
            for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
                let resource = crate::microsoft::Resource::parse(name).ok_or_else(|| {
                    input_error(format!(
                        "--resources: {name:?} is not a resource (graph, exchange, sharepoint)"
                    ))
                })?;
                parsed.push(resource);
            }
            if parsed.is_empty() {
                return Err(
                    input_error("--resources: name at least one resource, or \"default\"").into(),
                );
            }
            Some(Some(parsed))
        }
    };
    let host = sharepoint_host
        .as_deref()
        .map(crate::domain::SharePointHost::parse)
        .transpose()
        .map_err(|error| input_error(format!("--sharepoint-host: {}", error.0)))?;
    let rotation = on_off("rotation", rotation.as_deref())?;
    let lead_time = match rotation_lead_time.as_deref() {
        None => None,
        Some("default") => Some(None),
        Some(text) => {
            let lead_time = humantime::parse_duration(text)
                .map_err(|error| input_error(format!("--rotation-lead-time: {text:?}: {error}")))?;
            let lifetime = settings
                .rotation
                .policy
                .lifetime
                .to_std()
                .unwrap_or_default();
            if lead_time.is_zero() || lead_time >= lifetime {
                return Err(input_error(format!(
                    "--rotation-lead-time: {text} must be more than zero and less than rotation.lifetime ({})",
                    humantime::format_duration(lifetime)
                ))
                .into());
            }
            Some(Some(lead_time))
        }
    };
    let patch = crate::domain::SettingsPatch {
        resources,
        rotation,
        rotation_lead_time: lead_time,
        credential,
        remove_secret_after_grace,
    };
    if patch.is_empty() && host.is_none() {
        return Err(input_error(
            "nothing to change: pass --resources, --sharepoint-host, --rotation, --rotation-lead-time, --credential or --remove-secret-after-grace",
        )
        .into());
    }
    if patch.credential == Some(crate::domain::CredentialKind::Secret) {
        return Err(input_error(
            "--credential secret: kodo-access moves organizations to certificates, not back; store a secret with org set-secret",
        )
        .into());
    }
    let moving = patch.credential == Some(crate::domain::CredentialKind::Certificate);
    registry.configure(&OrgRef::parse(org), patch, host).await?;
    if moving && !settings.rotation.active() {
        eprintln!(
            "warning: rotation is off or has no [[rotation.*]] deliverer: {org} moves to a certificate only once it can be delivered"
        );
    }
    println!("{org} updated");
    Ok(())
}

/// One CSV row. Labels are `key=value` pairs separated by ';'.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct CsvRow {
    name: String,
    tenant_id: String,
    client_id: String,
    secret: Option<SecretString>,
    #[serde(default)]
    cloud: Option<String>,
    #[serde(default)]
    sharepoint_host: Option<String>,
    #[serde(default)]
    labels: Option<String>,
    #[serde(default)]
    secret_id: Option<String>,
    #[serde(default)]
    secret_expires: Option<String>,
    #[serde(default)]
    certificate_file: Option<PathBuf>,
    #[serde(default)]
    private_key_file: Option<PathBuf>,
    #[serde(default)]
    pkcs12_file: Option<PathBuf>,
    #[serde(default)]
    pkcs12_passphrase_file: Option<PathBuf>,
}

type Positioned = (String, crate::registry::NewOrganizationInput);

fn read_import(
    path: &Path,
    format: Option<ImportFormat>,
    clouds: &[String],
) -> anyhow::Result<Vec<Positioned>> {
    let format = match format {
        Some(format) => format,
        None => match path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            Some("csv") => ImportFormat::Csv,
            Some("json") => ImportFormat::Json,
            _ => {
                return Err(input_error(format!(
                    "cannot tell the format of {} from its extension: use .csv or .json, or pass --format",
                    path.display()
                ))
                .into());
            }
        },
    };
    // The file holds client secrets: the same rule as every secret file applies.
    let content = crate::config::read_secret_file(path).map_err(InputError)?;
    let content = content.expose_secret();
    let mut inputs = Vec::new();
    match format {
        ImportFormat::Csv => {
            let mut reader = csv::ReaderBuilder::new()
                .trim(csv::Trim::All)
                .from_reader(content.as_bytes());
            for (index, record) in reader.deserialize::<CsvRow>().enumerate() {
                let row_number = index + 1;
                let row: CsvRow = record.map_err(|error| {
                    let line = error
                        .position()
                        .map(|p| format!(" (line {})", p.line()))
                        .unwrap_or_default();
                    // csv errors quote field values only for UTF-8 problems; keep the kind only.
                    let what = match error.kind() {
                        csv::ErrorKind::Deserialize { err, .. } => err.to_string(),
                        csv::ErrorKind::UnequalLengths {
                            expected_len, len, ..
                        } => {
                            format!("expected {expected_len} fields, found {len}")
                        }
                        _ => "unreadable row".to_string(),
                    };
                    input_error(format!("row {row_number}{line}: {what}"))
                })?;
                let position = format!("row {row_number}");
                let raw = RawOrganization {
                    name: row.name,
                    tenant_id: row.tenant_id,
                    client_id: row.client_id,
                    secret: row.secret,
                    cloud: row.cloud,
                    sharepoint_host: row.sharepoint_host,
                    labels: row.labels.map(RawLabels::Pairs),
                    secret_id: row.secret_id,
                    secret_expires: row.secret_expires,
                    certificate_file: row.certificate_file.filter(|p| !p.as_os_str().is_empty()),
                    private_key_file: row.private_key_file.filter(|p| !p.as_os_str().is_empty()),
                    pkcs12_file: row.pkcs12_file.filter(|p| !p.as_os_str().is_empty()),
                    pkcs12_passphrase_file: row
                        .pkcs12_passphrase_file
                        .filter(|p| !p.as_os_str().is_empty()),
                };
                let input = raw.parse(clouds).map_err(|error| {
                    input_error(format!(
                        "{position}, field {}: {}",
                        error.field, error.error.0
                    ))
                })?;
                inputs.push((position, input));
            }
        }
        ImportFormat::Json => {
            let entries: Vec<serde_json::Value> =
                serde_json::from_str(content).map_err(|error| {
                    input_error(format!(
                        "{} is not a JSON array of organizations (line {}, column {}): {}",
                        path.display(),
                        error.line(),
                        error.column(),
                        error.classify_message()
                    ))
                })?;
            for (index, entry) in entries.into_iter().enumerate() {
                let position = format!("entry {}", index + 1);
                let raw: RawOrganization = serde_json::from_value(entry).map_err(|error| {
                    input_error(format!("{position}: {}", error.classify_message()))
                })?;
                let input = raw.parse(clouds).map_err(|error| {
                    input_error(format!(
                        "{position}, field {}: {}",
                        error.field, error.error.0
                    ))
                })?;
                inputs.push((position, input));
            }
        }
    }
    if inputs.is_empty() {
        return Err(input_error(format!("{} holds no organizations", path.display())).into());
    }
    Ok(inputs)
}

/// serde_json's message for an error, without echoing input values (they may be secrets).
trait ClassifyMessage {
    fn classify_message(&self) -> String;
}

impl ClassifyMessage for serde_json::Error {
    fn classify_message(&self) -> String {
        match self.classify() {
            serde_json::error::Category::Data => {
                let text = self.to_string();
                // "missing field `x`" and "unknown field `x`" name fields, never values.
                if text.starts_with("missing field") || text.starts_with("unknown field") {
                    text.split(" at line").next().unwrap_or(&text).to_string()
                } else {
                    "a field has the wrong type (expected strings, and an object for labels)".into()
                }
            }
            serde_json::error::Category::Syntax => "syntax error".into(),
            serde_json::error::Category::Eof => "unexpected end of file".into(),
            serde_json::error::Category::Io => "read error".into(),
        }
    }
}

#[derive(Serialize)]
struct OrganizationView {
    id: crate::domain::OrganizationId,
    name: String,
    tenant_id: uuid::Uuid,
    client_id: uuid::Uuid,
    cloud: String,
    sharepoint_host: Option<String>,
    labels: std::collections::BTreeMap<String, String>,
    enabled: bool,
    state: Option<crate::domain::State>,
    last_check_at: Option<chrono::DateTime<chrono::Utc>>,
    secret_hint: Option<String>,
    secret_expires_at: Option<chrono::DateTime<chrono::Utc>>,
    created_at: chrono::DateTime<chrono::Utc>,
}

async fn list(pool: &PgPool, output: Output) -> anyhow::Result<()> {
    let mut connection = pool.acquire().await?;
    let rows = store::organizations::list(&mut connection).await?;
    let views: Vec<OrganizationView> = rows
        .into_iter()
        .map(|row| OrganizationView {
            id: row.organization.id,
            name: row.organization.name,
            tenant_id: row.organization.tenant_id,
            client_id: row.organization.client_id,
            cloud: row.organization.cloud,
            sharepoint_host: row.organization.sharepoint_host,
            labels: row.organization.labels.0,
            enabled: row.organization.enabled,
            state: row.state,
            last_check_at: row.last_check_at,
            secret_hint: row.secret_hint,
            secret_expires_at: row.secret_end_at,
            created_at: row.organization.created_at,
        })
        .collect();
    match output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&views)?),
        Output::Table => {
            let mut table = super::table(&[
                "NAME",
                "TENANT",
                "CLIENT",
                "CLOUD",
                "MONITORING",
                "STATE",
                "SECRET EXPIRES",
                "LABELS",
            ]);
            for view in &views {
                table.add_row(vec![
                    view.name.clone(),
                    view.tenant_id.to_string(),
                    view.client_id.to_string(),
                    view.cloud.clone(),
                    if view.enabled {
                        "enabled".into()
                    } else {
                        "disabled".into()
                    },
                    view.state
                        .map_or_else(|| "-".into(), |state| state.to_string()),
                    super::format_time(view.secret_expires_at),
                    view.labels
                        .iter()
                        .map(|(k, v)| format!("{k}={v}"))
                        .collect::<Vec<_>>()
                        .join(","),
                ]);
            }
            if views.is_empty() {
                println!("no organizations registered (add one with `kodo-access org add`)");
            } else {
                println!("{table}");
            }
        }
    }
    Ok(())
}

/// What `org show` says of the organization's secret rotation.
fn rotation_view(
    rotation: &crate::config::RotationSettings,
    target: Option<&store::checks::TargetRow>,
    open: Option<&store::rotations::HistoryRow>,
) -> serde_json::Value {
    let no_settings = crate::domain::OrganizationSettings::default();
    let status = crate::target::rotation_status(
        rotation,
        &crate::target::RotationFacts {
            name: target.map_or("", |row| row.name.as_str()),
            settings: target.map_or(&no_settings, |row| &row.settings.0),
            secret_start: target.and_then(|row| row.start_at),
            secret_end: target.and_then(|row| row.end_at),
            next_attempt: open.map(|row| row.next_attempt_at),
        },
    );
    serde_json::json!({
        "active": status.is_on(),
        "off_because": status.off.map(crate::target::RotationOff::reason),
        "lead_time": humantime::format_duration(status.lead_time.to_std().unwrap_or_default()).to_string(),
        "next_due": status.next_due,
        "in_progress": open.map(|row| serde_json::json!({
            "rotation": row.id,
            "step": row.step,
            "attempts": row.attempts,
            "failure_reason": row.failure_reason,
            "last_error": row.last_error,
            "next_attempt_at": row.next_attempt_at,
        })),
    })
}

async fn show(
    pool: &PgPool,
    rotation: &crate::config::RotationSettings,
    reference: &OrgRef,
    output: Output,
) -> anyhow::Result<()> {
    let mut connection = pool.acquire().await?;
    let organization = store::organizations::require(&mut connection, reference).await?;
    let target = store::checks::targets(&mut connection, &[organization.id])
        .await?
        .pop();
    let open = store::rotations::history(&mut connection, Some(organization.id))
        .await?
        .into_iter()
        .find(|row| row.finished_at.is_none());
    let rotation = rotation_view(rotation, target.as_ref(), open.as_ref());
    let credentials =
        store::credentials::list_for_organization(&mut connection, organization.id).await?;
    let credential_views: Vec<serde_json::Value> = credentials
        .iter()
        .map(|credential| {
            serde_json::json!({
                "id": credential.id,
                "kind": credential.kind,
                "status": credential.status,
                "origin": credential.origin,
                "key_id": credential.key_id,
                "hint": credential.hint,
                "thumbprint": credential.thumbprint,
                "expires_at": credential.end_at,
                "created_at": credential.created_at,
                "sealed_with_key": credential.secret_key_id,
            })
        })
        .collect();
    let state = target.as_ref().map(|row| row.state);
    match output {
        Output::Json => {
            let view = serde_json::json!({
                "id": organization.id,
                "name": organization.name,
                "tenant_id": organization.tenant_id,
                "client_id": organization.client_id,
                "cloud": organization.cloud,
                "sharepoint_host": organization.sharepoint_host,
                "labels": organization.labels.0,
                "enabled": organization.enabled,
                "state": state,
                "created_at": organization.created_at,
                "updated_at": organization.updated_at,
                "credentials": credential_views,
                "rotation": rotation,
                "settings": target.as_ref().map(|row| &row.settings.0),
            });
            println!("{}", serde_json::to_string_pretty(&view)?);
        }
        Output::Table => {
            print_organization(&organization, state, &rotation, open.as_ref(), &credentials);
        }
    }
    Ok(())
}

/// `org show` for people.
fn print_organization(
    organization: &store::organizations::OrganizationRow,
    state: Option<crate::domain::State>,
    rotation: &serde_json::Value,
    open: Option<&store::rotations::HistoryRow>,
    credentials: &[store::credentials::CredentialRow],
) {
    println!("name:             {}", organization.name);
    println!("id:               {}", organization.id);
    println!("tenant id:        {}", organization.tenant_id);
    println!("client id:        {}", organization.client_id);
    println!("cloud:            {}", organization.cloud);
    println!(
        "sharepoint host:  {}",
        organization.sharepoint_host.as_deref().unwrap_or("-")
    );
    let labels: Vec<String> = organization
        .labels
        .0
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    println!(
        "labels:           {}",
        if labels.is_empty() {
            "-".into()
        } else {
            labels.join(",")
        }
    );
    println!(
        "monitoring:       {}",
        if organization.enabled {
            "enabled"
        } else {
            "disabled"
        }
    );
    println!(
        "state:            {}",
        state.map_or("-", crate::domain::State::as_str)
    );
    println!(
        "registered:       {}",
        super::format_time(Some(organization.created_at))
    );
    match rotation["off_because"].as_str() {
        Some(why) => println!("rotation:         off: {why}"),
        None => println!(
            "rotation:         on, lead time {}; next due {}",
            rotation["lead_time"].as_str().unwrap_or("-"),
            rotation["next_due"]
                .as_str()
                .unwrap_or("when the expiry is known (a check learns it)")
        ),
    }
    if let Some(open) = open {
        println!(
            "                  in progress: rotation {} at step {}{}",
            open.id,
            open.step,
            match (&open.failure_reason, &open.last_error) {
                (Some(reason), Some(error)) => format!(
                    "; {} failed attempt(s), {reason}: {error}; next attempt {}",
                    open.attempts,
                    super::format_time(Some(open.next_attempt_at))
                ),
                _ => String::new(),
            }
        );
    }
    println!();
    let mut table = super::table(&[
        "CREDENTIAL",
        "KIND",
        "STATUS",
        "ORIGIN",
        "KEY ID",
        "HINT / THUMBPRINT",
        "EXPIRES",
        "ADDED",
    ]);
    for credential in credentials {
        table.add_row(vec![
            credential.id.to_string(),
            credential.kind.to_string(),
            credential.status.to_string(),
            credential.origin.to_string(),
            credential
                .key_id
                .map(|k| k.to_string())
                .unwrap_or_else(|| "-".into()),
            credential
                .hint
                .clone()
                .or_else(|| credential.thumbprint.clone())
                .unwrap_or_else(|| "-".into()),
            super::format_time(credential.end_at),
            super::format_time(Some(credential.created_at)),
        ]);
    }
    println!("{table}");
}

pub async fn audit(
    pool: &PgPool,
    org: Option<&str>,
    limit: i64,
    output: Output,
) -> anyhow::Result<()> {
    let mut connection = pool.acquire().await?;
    let organization_id = match org {
        None => None,
        Some(org) => {
            let reference = OrgRef::parse(org);
            match store::organizations::find(&mut connection, &reference).await? {
                Some(row) => Some(row.id),
                // A removed organization's history is still in the audit log, by id.
                None => match reference {
                    OrgRef::Id(id) => Some(crate::domain::OrganizationId::from_uuid(id)),
                    OrgRef::Name(_) => {
                        return Err(input_error(format!("no organization {reference}")).into());
                    }
                },
            }
        }
    };
    let rows = store::audit::list(&mut connection, organization_id, limit).await?;
    match output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&rows)?),
        Output::Table => {
            let mut table = super::table(&[
                "TIME",
                "ACTOR",
                "ACTION",
                "ORGANIZATION",
                "SECRET ID",
                "DETAILS",
            ]);
            for row in rows {
                table.add_row(vec![
                    row.at.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
                    row.actor,
                    row.action,
                    row.organization_name.unwrap_or_else(|| "-".into()),
                    row.key_id
                        .map(|k| k.to_string())
                        .unwrap_or_else(|| "-".into()),
                    row.details.to_string(),
                ]);
            }
            println!("{table}");
        }
    }
    Ok(())
}
