//! `kodo-dev`: the demo and the benchmarks of kodo-access, against the simulated cloud.
//! A development tool: the installed `kodo-access` carries neither.

mod bench;
mod demo;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

// The same allocator as the daemon, so the benchmarks measure what is installed.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(
    name = "kodo-dev",
    version,
    about = "The demo and the benchmarks of kodo-access"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the simulated cloud and the daemon against it with a handful of tenants, some
    /// broken; watch checks, alerts, and a tenant healing. Nothing to configure.
    Demo(demo::DemoArgs),
    /// Benchmarks (see README, "Performance").
    #[command(subcommand)]
    Bench(BenchCommand),
}

#[derive(Debug, Subcommand)]
enum BenchCommand {
    /// One full check sweep of N organizations against the simulated cloud with latency L
    /// and at most C requests in flight; prints wall time against the bound N*R*L/C.
    Sweep(bench::SweepArgs),
    /// N organizations whose secrets are all due, rotated by one pass of the rotations job
    /// through a propagation delay; prints wall time, CPU and peak RSS.
    Rotate(bench::RotateArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let text = kodo_access::config::LogFormat::Text;
    let result = runtime.block_on(async {
        match &cli.command {
            Command::Demo(args) => {
                kodo_access::telemetry::init_logging("info", text);
                demo::run(args.phase, args.alertmanager.as_deref(), &args.database_url).await
            }
            Command::Bench(BenchCommand::Sweep(args)) => {
                kodo_access::telemetry::init_logging("error", text);
                bench::sweep(args).await
            }
            Command::Bench(BenchCommand::Rotate(args)) => {
                kodo_access::telemetry::init_logging("error", text);
                bench::rotate(args).await
            }
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(kodo_access::cli::exit_code(&error))
        }
    }
}

/// Runs `job` (the demo or a benchmark) with a database and a working directory that are
/// removed afterwards, whatever happened.
async fn throwaway<F, Fut>(what: &str, database_url: &str, job: F) -> anyhow::Result<()>
where
    F: FnOnce(String, PathBuf) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let database = format!("kodo_access_{what}_{}", std::process::id());
    let admin = sqlx::PgPool::connect(database_url).await.map_err(|error| {
        // Never the password a URL may carry.
        let shown = url::Url::parse(database_url)
            .map(|url| kodo_access::config::redact_url(&url))
            .unwrap_or_else(|_| "the given URL".into());
        anyhow::anyhow!(
            "the {what} needs a PostgreSQL server where it may create a database; none answered at {shown} ({error}). Start one (scripts/ensure-deps starts the local one) or pass --database-url / DATABASE_URL"
        )
    })?;
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {database}")))
        .execute(&admin)
        .await?;
    let work = tempfile::Builder::new()
        .prefix(&format!("kodo-access-{what}-"))
        .tempdir()?;
    let result = job(database.clone(), work.path().to_path_buf()).await;
    let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {database} WITH (FORCE)"
    )))
    .execute(&admin)
    .await;
    result
}

/// The permissions the daemon requires, by name, for the simulator's presets.
fn presets() -> kodo_simulator::catalogue::PresetNames {
    kodo_simulator::catalogue::PresetNames::from_permissions_toml(
        kodo_access::config::DEFAULT_MANIFEST,
    )
    .expect("the built-in manifest is a valid permissions file")
}

/// The built-in permissions file, written where a simulator process can read it.
fn permissions_file(work: &Path) -> anyhow::Result<PathBuf> {
    let path = work.join("permissions.toml");
    std::fs::write(&path, kodo_access::config::DEFAULT_MANIFEST)?;
    Ok(path)
}

/// The `kodo-simulator` binary built beside this one (`cargo build --workspace`), or
/// `KODO_SIMULATOR` when set.
fn simulator_binary() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os("KODO_SIMULATOR") {
        return Ok(PathBuf::from(path));
    }
    let beside = std::env::current_exe()?.with_file_name("kodo-simulator");
    anyhow::ensure!(
        beside.exists(),
        "no simulator at {}: build the workspace (cargo build --workspace --release) or set KODO_SIMULATOR",
        beside.display()
    );
    Ok(beside)
}
