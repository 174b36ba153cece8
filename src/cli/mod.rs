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
    /// Run the simulated Microsoft 365 cloud (Entra ID, Graph, SharePoint) until SIGTERM.
    #[cfg(feature = "simulator")]
    Simulate {
        /// Tenants, apps, secrets and permissions to start with (TOML or JSON).
        #[arg(long, value_name = "FILE")]
        scenario: Option<PathBuf>,
        /// Address to listen on (port 0 picks a free one; the URL is printed).
        #[arg(long, default_value = "127.0.0.1:8400")]
        listen: std::net::SocketAddr,
        /// Serve HTTPS with a generated CA (written to --ca-out) and leaf certificate.
        #[arg(long, requires = "ca_out")]
        tls: bool,
        /// Where to write the CA certificate (PEM) that clients must trust.
        #[arg(long, value_name = "PATH")]
        ca_out: Option<PathBuf>,
        /// Sign tokens with HMAC (HS256) rather than Entra's RS256, so that the
        /// simulator's CPU is not what a load test measures (no JWKS key then).
        #[arg(long)]
        fast_signing: bool,
    },
    /// Benchmarks (see README, "Performance").
    #[cfg(feature = "simulator")]
    #[command(subcommand)]
    Bench(BenchCommand),
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
    /// Run the simulated cloud and the daemon against it with a handful of tenants, some
    /// broken; watch checks, alerts, and a tenant healing. Nothing to configure.
    #[cfg(feature = "simulator")]
    Demo(fleet::DemoArgs),
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

#[cfg(feature = "simulator")]
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// One full check sweep of N organizations against the simulated cloud with latency L
    /// and at most C requests in flight; prints wall time against the bound N*R*L/C.
    Sweep(crate::bench::SweepArgs),
    /// N organizations whose secrets are all due, rotated by one pass of the rotations job
    /// through a propagation delay; prints wall time, CPU and peak RSS.
    Rotate(crate::bench::RotateArgs),
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
        #[cfg(feature = "simulator")]
        Command::Bench(BenchCommand::Sweep(args)) => {
            crate::telemetry::init_logging("error", cli.log_format.unwrap_or(LogFormat::Text));
            crate::bench::sweep(args).await
        }
        #[cfg(feature = "simulator")]
        Command::Bench(BenchCommand::Rotate(args)) => {
            crate::telemetry::init_logging("error", cli.log_format.unwrap_or(LogFormat::Text));
            crate::bench::rotate(args).await
        }
        #[cfg(feature = "simulator")]
        Command::Simulate {
            scenario,
            listen,
            tls,
            ca_out,
            fast_signing,
        } => {
            crate::telemetry::init_logging("info", cli.log_format.unwrap_or(LogFormat::Text));
            simulate(
                scenario.as_deref(),
                *listen,
                tls.then(|| ca_out.clone()).flatten(),
                *fast_signing,
            )
            .await
        }
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
                crate::alerts::sinks::signing_key(&sink.secret)
                    .map_err(|error| anyhow::anyhow!("webhook {}: {error}", sink.name))?;
                sinks.push((format!("webhook {}", sink.name), &sink.access));
            }
            for scoped in &settings.rotation.deliverers {
                if let crate::rotation::deliver::Deliverer::Webhook { key, access, .. } =
                    &scoped.deliverer
                {
                    let name = scoped.deliverer.describe();
                    crate::alerts::sinks::signing_key(key)
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
        #[cfg(feature = "simulator")]
        Command::Demo(args) => {
            crate::telemetry::init_logging("info", cli.log_format.unwrap_or(LogFormat::Text));
            fleet::demo(args).await
        }
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

#[cfg(feature = "simulator")]
async fn simulate(
    scenario: Option<&std::path::Path>,
    listen: std::net::SocketAddr,
    tls_ca_out: Option<PathBuf>,
    fast_signing: bool,
) -> anyhow::Result<()> {
    use crate::simulator::{self, SimulatorOptions};
    let scenario = match scenario {
        Some(path) => simulator::load_scenario(path).map_err(InputError)?,
        None => Default::default(),
    };
    let tenants = scenario.tenants.len();
    let running = simulator::start(
        SimulatorOptions {
            listen,
            scenario,
            tls_ca_out,
            fast_signing,
        },
        crate::config::builtin_manifest(),
    )
    .await
    .map_err(|error| InputError(format!("{error:#}")))?;
    // The first line of standard output is the URL, for scripts.
    println!("{}", running.base_url);
    use std::io::Write;
    std::io::stdout().flush()?;
    tracing::info!(url = %running.base_url, tenants, "simulated Microsoft 365 cloud listening; admin API under /_sim/");
    let shutdown = tokio_util::sync::CancellationToken::new();
    let token = shutdown.clone();
    tokio::spawn(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut terminate), Ok(mut interrupt)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            return;
        };
        tokio::select! {
            _ = terminate.recv() => {}
            _ = interrupt.recv() => {}
        }
        token.cancel();
    });
    running.serve_until(shutdown).await;
    tracing::info!("simulated cloud stopped");
    Ok(())
}
