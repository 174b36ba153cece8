//! `kodo-dev bench sweep`: one full check sweep of N organizations against the
//! simulated cloud (a separate process, so its CPU is not counted) with a fixed latency L
//! on every request and at most C requests in flight. Reports the wall time beside the
//! bound N×R×L/C, R (requests per organization), CPU per organization, peak RSS and SQL
//! statements per organization. Uses a throw-away database; leaves nothing behind.

use std::io::BufRead;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use secrecy::SecretString;
use uuid::Uuid;

use kodo_access::config::{ConfigLocation, Settings};
use kodo_access::crypto::Keyring;
use kodo_access::registry::{RawOrganization, Registry};

#[derive(Debug, clap::Args)]
pub struct SweepArgs {
    /// N: organizations (each its own tenant).
    #[arg(long, default_value_t = 10_000)]
    pub organizations: usize,
    /// What the organizations sign in with: `secret`, or `certificate` (one RSA-2048
    /// certificate registered on every app, so that the setup stays quick; each check still
    /// signs its own client assertion).
    #[arg(long, default_value = "secret", value_parser = ["secret", "certificate"])]
    pub credential: String,
    #[command(flatten)]
    pub cloud: CloudArgs,
}

/// What both benchmarks share: the simulated cloud's latency, the in-flight limit and
/// where to create the throw-away database.
#[derive(Debug, clap::Args)]
pub struct CloudArgs {
    /// L: latency the simulated cloud adds to every request, in milliseconds.
    #[arg(long, default_value_t = 50)]
    pub latency_ms: u64,
    /// C: requests to Microsoft in flight at most (microsoft.max_requests_in_flight).
    #[arg(long, default_value_t = 256)]
    pub concurrency: usize,
    /// PostgreSQL server to create the benchmark's throw-away database in.
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/postgres"
    )]
    pub database_url: String,
}

/// CPU time of this process so far (user + system).
fn cpu_time() -> Duration {
    stat_cpu("/proc/self/stat")
}

/// CPU time (user + system) of process `pid`.
fn process_cpu(pid: u32) -> Duration {
    stat_cpu(&format!("/proc/{pid}/stat"))
}

/// utime + stime of a `/proc/…/stat` file (fields 14 and 15 of proc(5)).
fn stat_cpu(path: &str) -> Duration {
    let stat = std::fs::read_to_string(path).unwrap_or_default();
    // Fields after the command name (which is in parentheses and may contain spaces).
    let rest = stat
        .rsplit_once(") ")
        .map(|(_, rest)| rest)
        .unwrap_or_default();
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |index: usize| {
        fields
            .get(index)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // Fields 14 and 15 are 12 and 13 after the name; USER_HZ is 100 on Linux for every
    // architecture this runs on.
    Duration::from_millis((ticks(11) + ticks(12)) * 10)
}

/// CPU time of every PostgreSQL server process on the machine (to see where a sweep's
/// CPU goes; the daemon shares the machine with it).
fn postgres_cpu() -> Duration {
    let mut total = Duration::ZERO;
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for entry in entries.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            if comm.trim() == "postgres" {
                total += process_cpu(pid);
            }
        }
    }
    total
}

fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|value| value.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Resets the peak RSS so that the sweep's own peak is measured, not the setup's.
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// What one measured stretch cost: wall time, this process's CPU, the simulated cloud's
/// and PostgreSQL's CPU, and this process's peak RSS.
struct Measured {
    wall: Duration,
    cpu: Duration,
    simulator_cpu: Duration,
    postgres_cpu: Duration,
    peak_rss_kib: u64,
}

struct Meter {
    simulator_pid: u32,
    started: Instant,
    cpu: Duration,
    simulator_cpu: Duration,
    postgres_cpu: Duration,
}

impl Meter {
    fn start(simulator_pid: u32) -> Meter {
        reset_peak_rss();
        Meter {
            simulator_pid,
            cpu: cpu_time(),
            simulator_cpu: process_cpu(simulator_pid),
            postgres_cpu: postgres_cpu(),
            started: Instant::now(),
        }
    }

    fn stop(self) -> Measured {
        Measured {
            wall: self.started.elapsed(),
            cpu: cpu_time() - self.cpu,
            simulator_cpu: process_cpu(self.simulator_pid) - self.simulator_cpu,
            postgres_cpu: postgres_cpu().saturating_sub(self.postgres_cpu),
            peak_rss_kib: peak_rss_kib(),
        }
    }
}

struct Simulator(std::process::Child);

impl Drop for Simulator {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub async fn sweep(args: &SweepArgs) -> anyhow::Result<()> {
    crate::throwaway("bench", &args.cloud.database_url, |database, work| {
        run(args, database, work)
    })
    .await
}

/// The simulated cloud (its own process) and N registered organizations, each its own
/// tenant with one app and one secret expiring in `expires_in_days`.
struct Fleet {
    _simulator: Simulator,
    simulator_pid: u32,
    base: String,
    settings: Settings,
    keyring: Keyring,
}

struct FleetSpec<'a> {
    organizations: usize,
    latency_ms: u64,
    propagation_delay_secs: u64,
    concurrency: usize,
    expires_in_days: i64,
    database_url: &'a str,
    database: &'a str,
    /// More configuration (TOML) for the daemon.
    extra_config: &'a str,
    /// A certificate (PEM) and key (PEM) every organization signs in with instead of its
    /// secret.
    certificate: Option<(String, SecretString)>,
}

async fn fleet(spec: FleetSpec<'_>, work: &std::path::Path) -> anyhow::Result<Fleet> {
    let n = spec.organizations;
    let namespace = Uuid::from_u128(0x6b6f_646f_6265_6e63_6800_0000_0000_0000);
    let tenant = |i: usize| Uuid::new_v5(&namespace, format!("tenant-{i}").as_bytes());
    let app = |i: usize| Uuid::new_v5(&namespace, format!("app-{i}").as_bytes());
    let key_id = |i: usize| Uuid::new_v5(&namespace, format!("key-{i}").as_bytes());
    let secret = |i: usize| format!("Ben8Q~bench-secret-{i:08}-000000000000");
    let expires = chrono::Utc::now() + chrono::Duration::days(spec.expires_in_days);
    let scenario = serde_json::json!({
        "faults": { "latency_ms": spec.latency_ms, "propagation_delay_secs": spec.propagation_delay_secs },
        "tenants": (0..n).map(|i| serde_json::json!({
            "id": tenant(i),
            "sharepoint_host": format!("t{i}.sharepoint.com"),
            "apps": [{ "app_id": app(i), "permissions": "all", "secrets": [{ "value": secret(i), "key_id": key_id(i), "expires": expires }],
                       "certificates": spec.certificate.as_ref().map(|(pem, _)| vec![serde_json::json!({ "pem": pem })]).unwrap_or_default() }],
        })).collect::<Vec<_>>(),
    });
    let scenario_path = work.join("scenario.json");
    std::fs::write(&scenario_path, serde_json::to_vec(&scenario)?)?;
    eprintln!(
        "starting the simulated cloud with {n} tenants, {} ms latency, {} s propagation",
        spec.latency_ms, spec.propagation_delay_secs
    );
    let mut child = Command::new(crate::simulator_binary()?)
        .arg("--permissions-file")
        .arg(crate::permissions_file(work)?)
        .args(["--fast-signing", "--listen", "127.0.0.1:0", "--scenario"])
        .arg(&scenario_path)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let mut url = String::new();
    std::io::BufReader::new(child.stdout.take().expect("piped")).read_line(&mut url)?;
    let simulator_pid = child.id();
    let _simulator = Simulator(child);
    let base = url.trim().to_string();
    anyhow::ensure!(
        base.starts_with("http"),
        "the simulated cloud did not start"
    );

    let key = work.join("master.key");
    kodo_access::crypto::generate_key_file(&key)?;
    let mut database_url = url::Url::parse(spec.database_url)?;
    database_url.set_path(&format!("/{}", spec.database));
    let config = format!(
        "[database]\nurl = \"{database_url}\"\nmax_connections = 20\n[crypto]\nmaster_key_file = \"{}\"\n[checks]\nmax_concurrent_checks = {}\nmax_checks_per_tenant = 2\nconfirm_delay = \"1s\"\n[microsoft]\nmax_requests_in_flight = {}\nrequest_timeout = \"60s\"\n[clouds.sim]\nauthority = \"{base}\"\ngraph = \"{base}\"\nexchange = \"{base}\"\nsharepoint = \"{base}\"\nsharepoint_suffix = \"sharepoint.com\"\ngraph_resource = \"https://graph.microsoft.com\"\nexchange_resource = \"https://outlook.office365.com\"\n{}",
        key.display(),
        spec.concurrency,
        spec.concurrency,
        spec.extra_config,
    );
    let config_path = work.join("config.toml");
    std::fs::write(&config_path, config)?;
    let settings = Settings::load_with_environment(
        &ConfigLocation {
            path: config_path,
            explicit: true,
        },
        vec![],
    )?;
    let pool = kodo_access::store::connect(&settings.database).await?;
    kodo_access::store::migrate(&pool).await?;
    let keyring = Keyring::load(&settings.crypto)?;
    eprintln!("registering {n} organizations");
    let registry = Registry {
        pool: &pool,
        keyring: &keyring,
        actor: "bench".into(),
    };
    let clouds: Vec<String> = settings.clouds.keys().cloned().collect();
    let shared = match &spec.certificate {
        Some((pem, key)) => Some(Arc::new(kodo_access::microsoft::ClientCertificate::new(
            pem.as_bytes(),
            secrecy::ExposeSecret::expose_secret(key).as_bytes(),
        )?)),
        None => None,
    };
    let mut inputs = Vec::with_capacity(n);
    for i in 0..n {
        let input = RawOrganization {
            name: format!("org-{i:05}"),
            tenant_id: tenant(i).to_string(),
            client_id: app(i).to_string(),
            secret: Some(SecretString::from(secret(i))),
            cloud: Some("sim".into()),
            sharepoint_host: Some(format!("t{i}.sharepoint.com")),
            labels: None,
            secret_id: Some(key_id(i).to_string()),
            secret_expires: Some(expires.to_rfc3339()),
            certificate_file: None,
            private_key_file: None,
            pkcs12_file: None,
            pkcs12_passphrase_file: None,
        }
        .parse(&clouds)
        .map_err(|error| anyhow::anyhow!("{}: {}", error.field, error.error))?;
        let mut input = input;
        if let (Some(certificate), Some((_, key))) = (&shared, &spec.certificate) {
            input.credential = kodo_access::registry::CredentialInput::Certificate(
                kodo_access::registry::CertificateInput {
                    certificate: certificate.clone(),
                    private_key: key.clone(),
                },
            );
        }
        inputs.push((format!("organization {i}"), input));
    }
    registry.import(inputs).await?;
    pool.close().await;
    Ok(Fleet {
        _simulator,
        simulator_pid,
        base,
        settings,
        keyring,
    })
}

/// One RSA-2048 certificate and its key, issued 200 days ago and valid for `days` more
/// days, for every organization of a certificate benchmark.
fn bench_certificate(days: i64) -> anyhow::Result<(String, SecretString)> {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256)?;
    let mut params = rcgen::CertificateParams::new(vec!["bench.kodo-access.test".into()])?;
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(200);
    params.not_after = now + time::Duration::days(days);
    let certificate = params.self_signed(&key)?;
    Ok((certificate.pem(), SecretString::from(key.serialize_pem())))
}

/// The daemon's context over the benchmark database, with the cloud's counters reset.
async fn context(
    settings: Settings,
    keyring: Keyring,
    base: &str,
) -> anyhow::Result<(kodo_access::context::Context, sqlx::PgPool, reqwest::Client)> {
    let pool = kodo_access::store::lazy_pool(&settings.database)?;
    let context = kodo_access::context::Context::new(
        Arc::new(settings),
        pool.clone(),
        Arc::new(keyring),
        tokio_util::sync::CancellationToken::new(),
    )?;
    let http = reqwest::Client::new();
    http.post(format!("{base}/_sim/counters/reset"))
        .send()
        .await?;
    Ok((context, pool, http))
}

async fn run(args: &SweepArgs, database: String, work: std::path::PathBuf) -> anyhow::Result<()> {
    let n = args.organizations;
    let Fleet {
        _simulator,
        simulator_pid,
        base,
        settings,
        keyring,
    } = fleet(
        FleetSpec {
            organizations: n,
            latency_ms: args.cloud.latency_ms,
            propagation_delay_secs: 0,
            concurrency: args.cloud.concurrency,
            expires_in_days: 200,
            database_url: &args.cloud.database_url,
            database: &database,
            extra_config: "",
            certificate: (args.credential == "certificate")
                .then(|| bench_certificate(365))
                .transpose()?,
        },
        &work,
    )
    .await?;
    let (context, pool, http) = context(settings, keyring, &base).await?;
    eprintln!("sweeping");
    let statements_before = kodo_access::store::statements_sent();
    let meter = Meter::start(simulator_pid);
    let summary = kodo_access::checks::run::check_due(&context).await?;
    let Measured {
        wall,
        cpu,
        simulator_cpu,
        postgres_cpu,
        peak_rss_kib: peak_rss,
    } = meter.stop();
    let statements = kodo_access::store::statements_sent() - statements_before;
    let counters: serde_json::Value = http
        .get(format!("{base}/_sim/counters"))
        .send()
        .await?
        .json()
        .await?;
    let requests = counters["total"].as_u64().unwrap_or(0);
    let states: Vec<(String, i64)> = sqlx::query_as(
        "SELECT state, count(*) FROM organization_status GROUP BY state ORDER BY 2 DESC",
    )
    .fetch_all(&pool)
    .await?;
    let checks: i64 = sqlx::query_scalar("SELECT count(*) FROM checks")
        .fetch_one(&pool)
        .await?;

    let (wall_2, cpu_2, statements_2, requests_2) =
        second_sweep(&context, &pool, &http, &base).await?;
    pool.close().await;
    let r = requests as f64 / n as f64;
    let bound =
        n as f64 * r * (args.cloud.latency_ms as f64 / 1000.0) / args.cloud.concurrency as f64;
    println!(
        "bench sweep: N = {n}, L = {} ms, C = {}, credential {}",
        args.cloud.latency_ms, args.cloud.concurrency, args.credential
    );
    println!(
        "  {summary}; {checks} checks stored; states: {}",
        states
            .iter()
            .map(|(s, c)| format!("{s} {c}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!("  wall time            {:.2} s", wall.as_secs_f64());
    println!(
        "  bound N*R*L/C        {bound:.2} s   (wall / bound = {:.3}; target <= 1.25)",
        wall.as_secs_f64() / bound
    );
    println!(
        "  R                    {r:.2} requests per organization ({requests} in all; target <= 6)"
    );
    println!(
        "  CPU                  {:.3} ms per organization ({:.2} s in all; target <= 1 ms)",
        cpu.as_secs_f64() * 1000.0 / n as f64,
        cpu.as_secs_f64()
    );
    println!(
        "  machine              {:.2} s CPU in the simulated cloud, {:.2} s in PostgreSQL ({} cores; all three share them)",
        simulator_cpu.as_secs_f64(),
        postgres_cpu.as_secs_f64(),
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    );
    println!(
        "  peak RSS             {:.1} MiB (target <= 128 MiB)",
        peak_rss as f64 / 1024.0
    );
    println!(
        "  SQL statements       {:.2} per organization ({statements} in all)",
        statements as f64 / n as f64
    );
    let bound_2 =
        n as f64 * (requests_2 as f64 / n as f64) * (args.cloud.latency_ms as f64 / 1000.0)
            / args.cloud.concurrency as f64;
    println!(
        "second sweep (steady state): wall {:.2} s, bound {bound_2:.2} s (ratio {:.3}), R {:.2}, CPU {:.3} ms per organization, {:.2} SQL statements per organization",
        wall_2.as_secs_f64(),
        wall_2.as_secs_f64() / bound_2,
        requests_2 as f64 / n as f64,
        cpu_2.as_secs_f64() * 1000.0 / n as f64,
        statements_2 as f64 / n as f64
    );
    Ok(())
}

/// A second sweep: the steady state, where nothing changed and no alert fires anew. Its
/// wall time, CPU, SQL statements and requests.
async fn second_sweep(
    context: &kodo_access::context::Context,
    pool: &sqlx::PgPool,
    http: &reqwest::Client,
    base: &str,
) -> anyhow::Result<(Duration, Duration, u64, u64)> {
    sqlx::query("UPDATE organization_status SET next_check_at = now()")
        .execute(pool)
        .await?;
    http.post(format!("{base}/_sim/counters/reset"))
        .send()
        .await?;
    let statements_before_2 = kodo_access::store::statements_sent();
    let cpu_before_2 = cpu_time();
    let started_2 = Instant::now();
    kodo_access::checks::run::check_due(context).await?;
    let wall_2 = started_2.elapsed();
    let cpu_2 = cpu_time() - cpu_before_2;
    let statements_2 = kodo_access::store::statements_sent() - statements_before_2;
    let requests_2 = http
        .get(format!("{base}/_sim/counters"))
        .send()
        .await?
        .json::<serde_json::Value>()
        .await?["total"]
        .as_u64()
        .unwrap_or(0);
    Ok((wall_2, cpu_2, statements_2, requests_2))
}

#[derive(Debug, clap::Args)]
pub struct RotateArgs {
    /// Organizations whose secrets are all due at once (each its own tenant).
    #[arg(long, default_value_t = 1_000)]
    pub organizations: usize,
    /// How long the simulated cloud refuses a new secret after creating it.
    #[arg(long, default_value_t = 20)]
    pub propagation_secs: u64,
    /// What the organizations sign in with and get anew: `secret`, or `certificate` (one
    /// RSA-2048 certificate due on every app; each rotation makes its own key pair and
    /// certificate and rolls it with addKey/removeKey).
    #[arg(long, default_value = "secret", value_parser = ["secret", "certificate"])]
    pub credential: String,
    /// With certificates: do not make them ahead (as `rotation.prepare_ahead = "0s"`), so
    /// that every rotation generates its key pair on its way.
    #[arg(long)]
    pub no_prepare_ahead: bool,
    #[command(flatten)]
    pub cloud: CloudArgs,
}

/// `kodo-dev bench rotate`: N organizations whose secrets are all due, rotated by one
/// pass of the rotations job (no grace period, so each rotation runs to its end: add,
/// verify through the propagation delay, deliver to a file, activate, remove the old
/// secret). Reports the wall time, the daemon's CPU and peak RSS, and checks the outcome.
pub async fn rotate(args: &RotateArgs) -> anyhow::Result<()> {
    crate::throwaway("bench", &args.cloud.database_url, |database, work| {
        run_rotate(args, database, work)
    })
    .await
}

async fn run_rotate(
    args: &RotateArgs,
    database: String,
    work: std::path::PathBuf,
) -> anyhow::Result<()> {
    let n = args.organizations;
    let backup = work.join("backup");
    std::fs::create_dir(&backup)?;
    let extra = format!(
        "[rotation]\ngrace = \"0s\"\nverify_timeout = \"5m\"\n[[rotation.file]]\ndirectory = \"{}\"\nmode = \"0600\"\n",
        backup.display()
    );
    let Fleet {
        _simulator,
        simulator_pid,
        base,
        settings,
        keyring,
    } = fleet(
        FleetSpec {
            organizations: n,
            latency_ms: args.cloud.latency_ms,
            propagation_delay_secs: args.propagation_secs,
            concurrency: args.cloud.concurrency,
            expires_in_days: 5,
            database_url: &args.cloud.database_url,
            database: &database,
            extra_config: &extra,
            certificate: (args.credential == "certificate")
                .then(|| bench_certificate(5))
                .transpose()?,
        },
        &work,
    )
    .await?;
    let max_connections = settings.database.max_connections;
    let (context, pool, http) = context(settings, keyring, &base).await?;
    // What the daemon does in the day before rotations are due (rotation.prepare_ahead):
    // make their certificates. Measured apart: it is not on the rotations' path.
    let ahead = if args.credential == "certificate" && !args.no_prepare_ahead {
        eprintln!("making the certificates ahead, as the daemon does before they are due");
        let candidates = {
            let mut connection = pool.acquire().await?;
            kodo_access::store::rotations::candidates(&mut connection).await?
        };
        let meter = Meter::start(simulator_pid);
        let made = kodo_access::rotation::procedure::prepare_ahead(
            &context,
            &candidates,
            chrono::Duration::days(1),
            usize::MAX,
            true,
        )
        .await?;
        let measured = meter.stop();
        Some((made, measured.wall, measured.cpu))
    } else {
        None
    };
    eprintln!("rotating");
    let meter = Meter::start(simulator_pid);
    let summary = kodo_access::rotation::procedure::rotate_due(&context).await?;
    let Measured {
        wall,
        cpu,
        simulator_cpu,
        postgres_cpu,
        peak_rss_kib: peak_rss,
    } = meter.stop();
    let counters: serde_json::Value = http
        .get(format!("{base}/_sim/counters"))
        .send()
        .await?
        .json()
        .await?;
    let requests = counters["total"].as_u64().unwrap_or(0);
    let (add, remove) = if args.credential == "certificate" {
        ("add_key", "remove_key")
    } else {
        ("add_password", "remove_password")
    };
    let sum = |name: &str| -> u64 {
        counters[name]
            .as_object()
            .map(|apps| apps.values().filter_map(|v| v.as_u64()).sum())
            .unwrap_or(0)
    };
    let (added, removed) = (sum(add), sum(remove));
    let finished: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM rotations WHERE step = 'finished' AND outcome = 'succeeded'",
    )
    .fetch_one(&pool)
    .await?;
    let files = std::fs::read_dir(&backup)?.count();
    pool.close().await;
    println!(
        "bench rotate: N = {n} {}s due at once, propagation {} s, L = {} ms, C = {}, {max_connections} database connections",
        args.credential, args.propagation_secs, args.cloud.latency_ms, args.cloud.concurrency
    );
    println!("  {summary}");
    if let Some((made, wall, cpu)) = ahead {
        println!(
            "  made ahead           {made} certificates before they were due: {:.1} s, {:.1} ms CPU each (not in the figures below)",
            wall.as_secs_f64(),
            cpu.as_secs_f64() * 1000.0 / made.max(1) as f64
        );
    }
    println!(
        "  outcome              {finished} rotations finished, {added} {add}, {removed} {remove}, {files} backup-server files"
    );
    println!(
        "  wall time            {:.1} s (target < 120 s; the propagation delay alone is {} s)",
        wall.as_secs_f64(),
        args.propagation_secs
    );
    println!(
        "  CPU                  {:.2} s in all, {:.2} ms per rotation",
        cpu.as_secs_f64(),
        cpu.as_secs_f64() * 1000.0 / n as f64
    );
    println!(
        "  machine              {:.2} s CPU in the simulated cloud, {:.2} s in PostgreSQL",
        simulator_cpu.as_secs_f64(),
        postgres_cpu.as_secs_f64()
    );
    println!("  peak RSS             {:.1} MiB", peak_rss as f64 / 1024.0);
    println!(
        "  requests             {:.1} per rotation ({requests} in all)",
        requests as f64 / n as f64
    );
    anyhow::ensure!(
        usize::try_from(finished).is_ok_and(|finished| finished == n)
            && added == n as u64
            && removed == n as u64
            && files == n,
        "not every rotation finished exactly once"
    );
    Ok(())
}
