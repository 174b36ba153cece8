//! `kodo-dev demo`: the simulated cloud with a handful of tenants, a throw-away
//! database and key, and the daemon running against them. The user watches checks run
//! and alerts fire, then one tenant heal and its alert resolve. Everything it creates is
//! removed at the end, also on Ctrl-C.

#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// How long to let the daemon run before healing a tenant, and again after.
    #[arg(long, default_value = "20s", value_parser = humantime::parse_duration)]
    pub phase: std::time::Duration,
    /// An Alertmanager to send the alerts to (e.g. http://127.0.0.1:9093).
    #[arg(long, value_name = "URL")]
    pub alertmanager: Option<String>,
    /// PostgreSQL server to create the demo's throw-away database in.
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/postgres"
    )]
    pub database_url: String,
}

use std::time::Duration;

use secrecy::SecretString;
use tokio_util::sync::CancellationToken;

use kodo_access::config::{ConfigLocation, Settings};
use kodo_access::crypto::Keyring;
use kodo_access::registry::{RawLabels, RawOrganization, Registry};
use kodo_simulator::{self as simulator, SimulatorOptions};

const SCENARIO: &str = include_str!("../../../config/scenarios/demo.toml");

/// The demo's organizations: name, tenant, app, secret, SharePoint host, resources.
const ORGANIZATIONS: &[(&str, &str, &str, &str, Option<&str>)] = &[
    (
        "contoso",
        "6f1c3f2e-4c55-4a8b-9d2e-0b7c1a2d3e4f",
        "0d9a8b7c-6e5f-4a3b-8c2d-1e0f9a8b7c6d",
        "Con8Q~contoso-demo-secret-0000000000000",
        None,
    ),
    (
        "fabrikam",
        "a1b2c3d4-e5f6-4789-8abc-def012345678",
        "12345678-9abc-4def-8123-456789abcdef",
        "Fab8Q~fabrikam-demo-secret-000000000000",
        None,
    ),
    (
        "northwind",
        "c0ffee00-1234-4abc-8def-0123456789ab",
        "deadbeef-1234-4abc-8def-0123456789ab",
        "Nor8Q~northwind-demo-secret-00000000000",
        None,
    ),
    (
        "adatum",
        "0a0a0a0a-1b1b-4c2c-8d3d-4e4e4e4e4e4e",
        "5f5f5f5f-6a6a-4b7b-8c8c-9d9d9d9d9d9d",
        "Ada8Q~adatum-demo-secret-00000000000000",
        None,
    ),
    (
        "litware",
        "1c1c1c1c-2d2d-4e3e-8f4f-505050505050",
        "3b3b3b3b-4c4c-4d5d-8e6e-7f7f7f7f7f7f",
        "Lit8Q~litware-demo-secret-0000000000000",
        None,
    ),
    (
        "tailspin",
        "2e2e2e2e-3f3f-4a4a-8b5b-6c6c6c6c6c6c",
        "7a7a7a7a-8b8b-4c9c-8d0d-1e1e1e1e1e1e",
        "Tai8Q~tailspin-demo-secret-000000000000",
        Some("tailspin.sharepoint.com"),
    ),
];

fn say(text: &str) {
    println!("\n\x1b[1m== {text}\x1b[0m");
}

pub async fn run(
    phase: Duration,
    alertmanager: Option<&str>,
    admin_url: &str,
) -> anyhow::Result<()> {
    let interrupted = CancellationToken::new();
    {
        let interrupted = interrupted.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                interrupted.cancel();
            }
        });
    }
    // Whether the demo ran at all (no database server: nothing was created to clean up).
    let started = std::cell::Cell::new(false);
    let started_ref = &started;
    let result = crate::throwaway("demo", admin_url, |database, work| async move {
        started_ref.set(true);
        demo(
            phase,
            alertmanager,
            admin_url,
            &database,
            &work,
            &interrupted,
        )
        .await
    })
    .await;
    if started.get() {
        say("cleaned up: the demo database, key and simulated cloud are gone");
    }
    result
}

async fn demo(
    phase: Duration,
    alertmanager: Option<&str>,
    admin_url: &str,
    database: &str,
    work: &std::path::Path,
    interrupted: &CancellationToken,
) -> anyhow::Result<()> {
    say("a simulated Microsoft 365 cloud with six tenants");
    let scenario =
        simulator::model::Scenario::parse("demo.toml", SCENARIO).map_err(anyhow::Error::msg)?;
    let sim = simulator::start(SimulatorOptions {
        listen: "127.0.0.1:0".parse()?,
        scenario,
        tls_ca_out: None,
        fast_signing: false,
        presets: crate::presets(),
    })
    .await?;
    println!(
        "listening on {} (admin API: {}/_sim/state)",
        sim.base_url, sim.base_url
    );

    let backup = work.join("backup-server");
    std::fs::create_dir(&backup)?;
    let key = work.join("master.key");
    kodo_access::crypto::generate_key_file(&key)?;
    let mut database_url = url::Url::parse(admin_url)?;
    database_url.set_path(&format!("/{database}"));
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let alertmanager_section = alertmanager
        .map(|url| format!("[[alerts.alertmanager]]\nname = \"demo\"\nurl = \"{url}\"\n"))
        .unwrap_or_default();
    let config = format!(
        r#"[database]
url = "{database_url}"
auto_migrate = true
[crypto]
master_key_file = "{key}"
[http]
listen = "127.0.0.1:{port}"
[checks]
interval = "10s"
pickup_interval = "2s"
confirm_delay = "2s"
retry_failed_after = "5s"
[alerts]
delivery_interval = "2s"
resend_interval = "10s"
{alertmanager_section}
[rotation]
pickup_interval = "5s"
grace = "15s"
verify_timeout = "30s"
[[rotation.file]]
directory = "{backup}"
mode = "0600"

[clouds.sim]
authority = "{base}"
graph = "{base}"
exchange = "{base}"
sharepoint = "{base}"
sharepoint_suffix = "sharepoint.com"
graph_resource = "https://graph.microsoft.com"
exchange_resource = "https://outlook.office365.com"
"#,
        key = key.display(),
        base = sim.base_url,
        backup = backup.display(),
    );
    let config_path = work.join("config.toml");
    std::fs::write(&config_path, &config)?;
    let settings = Settings::load_with_environment(
        &ConfigLocation {
            path: config_path,
            explicit: true,
        },
        vec![],
    )?;
    println!(
        "database {database}, metrics on http://127.0.0.1:{port}/metrics{}",
        alertmanager
            .map(|url| format!(", alerts to Alertmanager {url}"))
            .unwrap_or_default()
    );

    let pool = register(&settings).await?;

    say("kodo-access run: checks every 10 s; watch the alerts fire, and adatum's secret rotate");
    let shutdown = CancellationToken::new();
    let daemon = tokio::spawn(kodo_access::app::run_until(
        settings.clone(),
        shutdown.clone(),
    ));
    let stopped_early = wait(phase, interrupted).await;
    if !stopped_early {
        heal_and_show(&pool, &sim.base_url, &backup, phase, interrupted).await?;
    }
    say("stopping the daemon (as SIGTERM would)");
    shutdown.cancel();
    let outcome = daemon.await?;
    pool.close().await;
    sim.stop().await;
    outcome
}

/// Registers the six organizations (secrets sealed at rest); only Tailspin is checked on
/// SharePoint.
async fn register(settings: &Settings) -> anyhow::Result<sqlx::PgPool> {
    say("register the six organizations (secrets sealed at rest)");
    let pool = kodo_access::store::connect(&settings.database).await?;
    kodo_access::store::migrate(&pool).await?;
    let keyring = Keyring::load(&settings.crypto)?;
    let registry = Registry {
        pool: &pool,
        keyring: &keyring,
        actor: "demo".into(),
    };
    let clouds: Vec<String> = settings.clouds.keys().cloned().collect();
    for (name, tenant, app, secret, sharepoint) in ORGANIZATIONS {
        let input = RawOrganization {
            name: name.to_string(),
            tenant_id: tenant.to_string(),
            client_id: app.to_string(),
            secret: Some(SecretString::from(secret.to_string())),
            cloud: Some("sim".into()),
            sharepoint_host: sharepoint.map(String::from),
            labels: Some(RawLabels::List(vec!["source=demo".into()])),
            secret_id: None,
            secret_expires: None,
            certificate_file: None,
            private_key_file: None,
            pkcs12_file: None,
            pkcs12_passphrase_file: None,
        }
        .parse(&clouds)
        .map_err(|error| anyhow::anyhow!("{}: {}", error.field, error.error))?;
        registry.add(input).await?;
        println!("  {name}");
    }
    // Only Tailspin is checked on SharePoint; the others on Graph and Exchange.
    for (name, .., sharepoint) in ORGANIZATIONS {
        if sharepoint.is_none() {
            let mut connection = pool.acquire().await?;
            let organization = kodo_access::store::organizations::find(
                &mut connection,
                &kodo_access::domain::OrgRef::Name(name.to_string()),
            )
            .await?
            .expect("just added");
            kodo_access::store::organizations::set_settings(
                &mut connection,
                organization.id,
                &kodo_access::domain::OrganizationSettings {
                    resources: Some(vec![
                        kodo_access::microsoft::Resource::Graph,
                        kodo_access::microsoft::Resource::Exchange,
                    ]),
                    ..Default::default()
                },
            )
            .await?;
        }
    }
    Ok(pool)
}

/// The second half: fabrikam heals and is checked at once, tailspin moves to a certificate
/// (SharePoint refuses its secret); then what rotated and what the backup server received.
async fn heal_and_show(
    pool: &sqlx::PgPool,
    simulator: &str,
    backup: &std::path::Path,
    phase: Duration,
    interrupted: &CancellationToken,
) -> anyhow::Result<()> {
    print_fleet(pool).await?;
    say("heal fabrikam: its admin grants consent for Exchange Online again");
    let tenant = ORGANIZATIONS[1].1;
    let app = ORGANIZATIONS[1].2;
    let response = reqwest::Client::new()
        .post(format!(
            "{}/_sim/tenants/{tenant}/apps/{app}/consent/grant",
            simulator
        ))
        .json(&serde_json::json!({"resource": "exchange"}))
        .send()
        .await?;
    println!("simulated cloud: {}", response.text().await?);
    // Rather than wait for its next turn, ask for fabrikam's check now.
    let mut connection = pool.acquire().await?;
    let fabrikam = kodo_access::store::organizations::find(
        &mut connection,
        &kodo_access::domain::OrgRef::Name("fabrikam".into()),
    )
    .await?
    .expect("registered");
    kodo_access::store::checks::check_soon(&mut connection, fabrikam.id).await?;
    say(
        "rescue tailspin's SharePoint backup: kodo-access org set tailspin --credential certificate",
    );
    let tailspin = kodo_access::store::organizations::find(
        &mut connection,
        &kodo_access::domain::OrgRef::Name("tailspin".into()),
    )
    .await?
    .expect("registered");
    // What `org set` does: the rotations job makes a certificate, adds it to the app with
    // the secret's rights, verifies, delivers and activates it.
    kodo_access::store::organizations::set_settings(
        &mut connection,
        tailspin.id,
        &kodo_access::domain::OrganizationSettings {
            credential: Some(kodo_access::domain::CredentialKind::Certificate),
            ..Default::default()
        },
    )
    .await?;
    drop(connection);
    if !wait(phase, interrupted).await {
        print_fleet(pool).await?;
        say("rotations, and what the backup server received");
        let mut connection = pool.acquire().await?;
        for row in kodo_access::store::rotations::history(&mut connection, None).await? {
            println!(
                "  {:<10} rotation {} {} (new credential id {})",
                row.organization,
                row.id,
                row.step,
                row.new_key_id.map(|k| k.to_string()).unwrap_or_default()
            );
        }
        for entry in std::fs::read_dir(backup)? {
            let path = entry?.path();
            let document: serde_json::Value = serde_json::from_slice(&std::fs::read(&path)?)?;
            println!(
                "  {} ({} id {}, the {} itself not shown)",
                path.display(),
                document["credential_type"].as_str().unwrap_or("secret"),
                document["secret_id"].as_str().unwrap_or_default(),
                if document["credential_type"] == "certificate" {
                    "private key"
                } else {
                    "secret"
                }
            );
        }
    }
    Ok(())
}

/// Waits `phase`; true when the user pressed Ctrl-C first.
async fn wait(phase: Duration, interrupted: &CancellationToken) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(phase) => false,
        _ = interrupted.cancelled() => true,
    }
}

async fn print_fleet(pool: &sqlx::PgPool) -> anyhow::Result<()> {
    let mut connection = pool.acquire().await?;
    let statuses = kodo_access::store::checks::statuses(&mut connection).await?;
    say("kodo-access status");
    for status in &statuses {
        let headline = status
            .findings
            .as_array()
            .and_then(|f| f.iter().find(|f| f["severity"] != "info"))
            .and_then(|f| f["message"].as_str())
            .unwrap_or("");
        println!("  {:<10} {:<20} {headline}", status.name, status.state);
    }
    let active = kodo_access::store::alerts::active(&mut connection).await?;
    say("kodo-access alerts");
    for alert in &active {
        println!(
            "  {:<8} {:<10} {}",
            alert.severity,
            alert.organization.clone().unwrap_or_default(),
            alert.labels["alertname"].as_str().unwrap_or_default()
        );
    }
    Ok(())
}
