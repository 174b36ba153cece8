//! `kodo-simulator`: serve the simulated Microsoft 365 cloud until SIGTERM or Ctrl-C.
//! The first line of standard output is its URL, for scripts.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use kodo_simulator::catalogue::PresetNames;
use kodo_simulator::{SimulatorOptions, load_scenario, start};

// The allocator the daemon uses: in the benchmarks the simulator shares the cores with the
// daemon and PostgreSQL, and the system allocator cost it a third more CPU.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A simulated Microsoft 365 cloud (Entra ID, Microsoft Graph, SharePoint REST) for many
/// tenants; admin API under /_sim/. For tests, demos and rehearsals, never production.
#[derive(Debug, Parser)]
#[command(name = "kodo-simulator", version)]
struct Args {
    /// Tenants, apps, secrets and permissions to start with (TOML or JSON).
    #[arg(long, value_name = "FILE")]
    scenario: Option<PathBuf>,
    /// Which permissions (by name) the scenario presets "backup" and "all" grant: a file
    /// in kodo-access's format (config/permissions.toml); its ids are not read.
    #[arg(long, value_name = "FILE")]
    permissions_file: Option<PathBuf>,
    /// Address to listen on (port 0 picks a free one; the URL is printed).
    #[arg(long, default_value = "127.0.0.1:8400")]
    listen: SocketAddr,
    /// Serve HTTPS with a generated CA (written to --ca-out) and leaf certificate.
    #[arg(long, requires = "ca_out")]
    tls: bool,
    /// Where to write the CA certificate (PEM) that clients must trust.
    #[arg(long, value_name = "PATH")]
    ca_out: Option<PathBuf>,
    /// Sign tokens with HMAC (HS256) rather than Entra's RS256, so that the simulator's CPU is
    /// not what a load test measures.
    #[arg(long)]
    fast_signing: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(2)
        }
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    let scenario = match &args.scenario {
        Some(path) => load_scenario(path).map_err(anyhow::Error::msg)?,
        None => Default::default(),
    };
    let presets = match &args.permissions_file {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|error| {
                anyhow::anyhow!("cannot read permissions file {}: {error}", path.display())
            })?;
            PresetNames::from_permissions_toml(&text).map_err(anyhow::Error::msg)?
        }
        None => PresetNames::default(),
    };
    let tenants = scenario.tenants.len();
    let running = start(SimulatorOptions {
        listen: args.listen,
        scenario,
        tls_ca_out: args.tls.then_some(args.ca_out).flatten(),
        fast_signing: args.fast_signing,
        presets,
    })
    .await?;
    println!("{}", running.base_url);
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
