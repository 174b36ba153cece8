//! The command line: what each subcommand means, and the exit status it ends with.
//!
//! Exit status: 0 success; 1 the operation failed (database unreachable, I/O error);
//! 2 the invocation, the configuration or the input is wrong (bad flag, bad key, invalid
//! GUID, duplicate name, unknown organization) and nothing was changed.

mod fleet;
mod jobs;
mod keys;
mod org;

use std::path::PathBuf;
use std::sync::Arc;

use clap::{Parser, Subcommand, ValueEnum};

use crate::config::{ConfigError, ConfigLocation, DEFAULT_CONFIG_PATH, LogFormat, Settings};
use crate::domain::InputError;

#[derive(Debug, Parser)]
#[command(
    name = "kodo-access",
    version,
    about = "Keeps Microsoft 365 app access alive across many customer tenants"
)]
pub struct Cli {
    /// Configuration file, layered over the built-in defaults.
    #[arg(long, global = true, env = "KODO_ACCESS_CONFIG", value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Log format (overrides log.format).
    #[arg(long, global = true, value_enum)]
    pub log_format: Option<LogFormat>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
#[expect(
    clippy::large_enum_variant,
    reason = "parsed once per process; boxing would only move the bytes"
)]
pub enum Command {
    /// Run the daemon in the foreground (as systemd expects).
    Run,
    /// Apply the database migrations.
    Migrate,
    /// Inspect the configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Manage the master key that seals secrets at rest.
    #[command(subcommand)]
    Key(keys::KeyCommand),
    /// Register and manage organizations (a customer tenant and its app registration).
    #[command(subcommand)]
    Org(org::OrgCommand),
    /// List the periodic jobs or run one now.
    #[command(subcommand)]
    Job(jobs::JobCommand),
    /// Check organizations now, store the results, print each verdict. Exit status 3 when
    /// any organization is not healthy.
    Check {
        /// The organization (name or id).
        org: Option<String>,
        /// Every enabled organization.
        #[arg(long, conflicts_with = "org")]
        all: bool,
        #[arg(long, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
    /// The fleet at a glance: counts by state, worst first; secrets expiring soonest.
    Status {
        #[arg(long, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
    /// Active alerts, worst first.
    Alerts {
        #[arg(long, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
    /// Rotate an organization's client secret now (or resume its unfinished rotation).
    Rotate { org: String },
    /// Rotation history and rotations in progress, newest first.
    Rotations {
        org: Option<String>,
        #[arg(long, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
    /// Show the audit log, newest first.
    Audit {
        /// Only this organization (name or id).
        org: Option<String>,
        /// At most this many entries.
        #[arg(long, default_value_t = 50)]
        limit: i64,
        #[arg(long, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate the configuration and print it, every secret redacted.
    Check,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Table,
    Json,
}

/// Not an error of the command: `check` found organizations that are not healthy.
#[derive(Debug, thiserror::Error)]
#[error("{0} organization(s) not healthy")]
pub struct NotHealthy(pub usize);

/// The exit status for an error: 2 when the operator's input or configuration is wrong,
/// 3 when `check` found organizations that are not healthy.
pub fn exit_code(error: &anyhow::Error) -> u8 {
    if error.chain().any(|cause| cause.is::<NotHealthy>()) {
        return 3;
    }
    let is_input = error
        .chain()
        .any(|cause| cause.is::<InputError>() || cause.is::<ConfigError>());
    if is_input { 2 } else { 1 }
}

/// Loads the configuration and starts logging; every command begins here.
fn settings(cli: &Cli) -> anyhow::Result<Settings> {
    let location = match &cli.config {
        Some(path) => ConfigLocation {
            path: path.clone(),
            explicit: true,
        },
        None => ConfigLocation {
            path: PathBuf::from(DEFAULT_CONFIG_PATH),
            explicit: false,
        },
    };
    let mut settings = Settings::load(&location)?;
    if let Some(format) = cli.log_format {
        settings.log.format = format;
    }
    crate::telemetry::init_logging(&settings.log.level, settings.log.format);
    Ok(settings)
}

pub async fn execute(cli: Cli) -> anyhow::Result<()> {
    match &cli.command {
        Command::Key(keys::KeyCommand::Generate { out }) => keys::generate(out),
        Command::Run => crate::app::run(settings(&cli)?).await,
        Command::Migrate => {
            let settings = settings(&cli)?;
            let pool = crate::store::connect(&settings.database).await?;
            crate::store::migrate(&pool).await?;
            let applied = crate::store::MIGRATOR.iter().count();
            println!("database schema is current ({applied} migrations)");
            Ok(())
        }
        Command::Config(ConfigCommand::Check) => {
            let settings = settings(&cli)?;
            if let Some(source) = &settings.database.password {
                source.read()?;
            }
            match &settings.crypto.master_key {
                Some(_) => {
                    let keyring = crate::crypto::Keyring::load(&settings.crypto)?;
                    println!("# master key: {} (readable)", keyring.current_id());
                }
                None => {
                    println!("# master key: not configured (needed by run, org and key commands)")
                }
            }
            // Every sink's secrets and TLS files, read as a delivery would read them.
            let mut sinks: Vec<(String, &crate::sink_http::SinkAccess)> = Vec::new();
            for sink in &settings.alerts.alertmanagers {
                sinks.push((format!("alertmanager {}", sink.name), &sink.access));
            }
            for sink in &settings.alerts.webhooks {
                crate::sink_http::signing_key(&sink.secret)
                    .map_err(|error| anyhow::anyhow!("webhook {}: {error}", sink.name))?;
                sinks.push((format!("webhook {}", sink.name), &sink.access));
            }
            for scoped in &settings.rotation.deliverers {
                if let crate::rotation::deliver::Deliverer::Webhook { key, access, .. } =
                    &scoped.deliverer
                {
                    let name = scoped.deliverer.describe();
                    crate::sink_http::signing_key(key)
                        .map_err(|error| anyhow::anyhow!("{name}: {error}"))?;
                    sinks.push((name, access));
                }
            }
            for (name, access) in sinks {
                access
                    .check()
                    .map_err(|error| anyhow::anyhow!("{name}: {error}"))?;
                if access.auth.is_some() || access.tls.is_some() {
                    println!("# {name}: credentials and TLS files readable");
                }
            }
            let rotation = &settings.rotation;
            if rotation.enabled && !rotation.active() {
                println!(
                    "# secret rotation: on, but no [[rotation.file]], [[rotation.command]] or [[rotation.webhook]]: nothing will be rotated"
                );
            }
            print!("{}", settings.redacted());
            Ok(())
        }
        Command::Key(command) => keys::execute(settings(&cli)?, command).await,
        Command::Org(command) => org::execute(settings(&cli)?, command).await,
        Command::Job(command) => jobs::execute(settings(&cli)?, command).await,
        Command::Check { org, all, output } => {
            fleet::check(settings(&cli)?, org.as_deref(), *all, *output).await
        }
        Command::Status { output } => fleet::status(settings(&cli)?, *output).await,
        Command::Rotate { org } => fleet::rotate(settings(&cli)?, org).await,
        Command::Rotations { org, output } => {
            fleet::rotations(settings(&cli)?, org.as_deref(), *output).await
        }
        Command::Alerts { output } => fleet::alerts(settings(&cli)?, *output).await,
        Command::Audit { org, limit, output } => {
            let settings = settings(&cli)?;
            let pool = crate::store::connect(&settings.database).await?;
            org::audit(&pool, org.as_deref(), *limit, *output).await
        }
    }
}

/// A context for one-shot commands that run daemon code (jobs, checks).
async fn one_shot_context(settings: Settings) -> anyhow::Result<crate::context::Context> {
    let keyring = crate::crypto::Keyring::load(&settings.crypto)?;
    let pool = crate::store::connect(&settings.database).await?;
    let context = crate::context::Context::new(
        Arc::new(settings),
        pool,
        Arc::new(keyring),
        tokio_util::sync::CancellationToken::new(),
    )?;
    context.readiness.set_database_up(true);
    Ok(context)
}

fn format_time(time: Option<chrono::DateTime<chrono::Utc>>) -> String {
    time.map(|time| time.format("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_else(|| "-".into())
}

fn table(header: &[&str]) -> comfy_table::Table {
    let mut table = comfy_table::Table::new();
    table
        .load_preset(comfy_table::presets::NOTHING)
        .set_header(header.to_vec());
    table
}
