//! `kodo-access run` as systemd runs it: notification protocol, health endpoints, metrics
//! that promtool accepts, the scheduler, clean shutdown, and riding out a database outage.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlx::PgPool;

use crate::daemon_support::{Daemon, Proxy};
use crate::support::*;

/// Collects what the daemon sends to $NOTIFY_SOCKET.
struct NotifySocket {
    path: std::path::PathBuf,
    messages: Arc<Mutex<Vec<String>>>,
}

impl NotifySocket {
    fn bind(env: &TestEnv) -> NotifySocket {
        let path = env.path("notify.sock");
        let socket = tokio::net::UnixDatagram::bind(&path).unwrap();
        let messages = Arc::new(Mutex::new(Vec::new()));
        let sink = messages.clone();
        tokio::spawn(async move {
            let mut buffer = vec![0u8; 4096];
            while let Ok(length) = socket.recv(&mut buffer).await {
                sink.lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(&buffer[..length]).into_owned());
            }
        });
        NotifySocket { path, messages }
    }

    fn received(&self, line: &str) -> bool {
        self.messages
            .lock()
            .unwrap()
            .iter()
            .any(|message| message.lines().any(|l| l == line))
    }
}

#[sqlx::test]
async fn speaks_sd_notify_and_exits_cleanly_on_sigterm(pool: PgPool) {
    let env = TestEnv::new(&pool);
    let notify = NotifySocket::bind(&env);
    let daemon = Daemon::start(
        &env,
        &[
            ("NOTIFY_SOCKET", notify.path.to_str().unwrap()),
            ("WATCHDOG_USEC", "400000"),
        ],
    );
    daemon.wait_ready().await;
    eventually(Duration::from_secs(10), "READY=1", || async {
        notify.received("READY=1")
    })
    .await;
    eventually(Duration::from_secs(5), "WATCHDOG=1 pings", || async {
        notify
            .messages
            .lock()
            .unwrap()
            .iter()
            .filter(|m| m.contains("WATCHDOG=1"))
            .count()
            >= 2
    })
    .await;
    assert_eq!(daemon.get("/healthz").await.unwrap(), (200, "ok\n".into()));
    assert!(!notify.received("STOPPING=1"));

    let (code, log) = daemon.terminate().await;
    assert_eq!(code, 0, "exit status after SIGTERM; log:\n{log}");
    eventually(Duration::from_secs(2), "STOPPING=1", || async {
        notify.received("STOPPING=1")
    })
    .await;
    assert!(log.contains("SIGTERM received"), "{log}");
    assert!(log.contains("stopped"), "{log}");
}

#[sqlx::test]
async fn sigint_also_stops_it_and_json_logs_are_json(pool: PgPool) {
    let env = TestEnv::with_extra(&pool, "[log]\nformat = \"json\"\n");
    let daemon = Daemon::start(&env, &[]);
    daemon.wait_ready().await;
    daemon.signal("INT");
    let mut daemon = daemon;
    let status = tokio::time::timeout(Duration::from_secs(15), daemon.child.wait())
        .await
        .unwrap()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(status.code(), Some(0));
    let log = daemon.log();
    assert!(log.lines().count() >= 4, "{log}");
    for line in log.lines() {
        let event: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|_| panic!("not JSON: {line}"));
        assert!(
            event["level"].is_string() && event["message"].is_string(),
            "{line}"
        );
    }
    assert!(log.contains("SIGINT received"));
}

#[sqlx::test]
async fn scheduled_jobs_run_and_metrics_pass_promtool(pool: PgPool) {
    let env = TestEnv::with_extra(&pool, "[jobs.housekeeping]\nschedule = \"* * * * * *\"\n");
    env.add_org("contoso", TENANT_A, CLIENT_A, "Abc8Q~x")
        .success();
    env.add_org("fabrikam", TENANT_B, CLIENT_B, "Def8Q~y")
        .success();
    env.run(&["org", "disable", "fabrikam"]).success();
    let daemon = Daemon::start(&env, &[]);
    daemon.wait_ready().await;
    eventually(
        Duration::from_secs(10),
        "a scheduled housekeeping run",
        || async {
            let runs: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM job_runs WHERE trigger = 'schedule' AND outcome = 'succeeded'",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
            runs >= 1
        },
    )
    .await;

    let (status, metrics) = daemon.get("/metrics").await.unwrap();
    assert_eq!(status, 200);
    assert!(
        metrics.contains("kodo_access_organizations{enabled=\"true\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("kodo_access_organizations{enabled=\"false\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("kodo_access_database_up 1"), "{metrics}");
    let succeeded = metrics
        .lines()
        .find(|l| {
            l.starts_with("kodo_access_job_runs_total{job=\"housekeeping\",outcome=\"succeeded\"}")
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0);
    assert!(succeeded >= 1.0, "{metrics}");
    assert!(!metrics.contains("Abc8Q~x"));

    assert_promtool_clean(&metrics);

    let (code, log) = daemon.terminate().await;
    assert_eq!(code, 0, "{log}");
}

#[sqlx::test]
async fn rides_out_a_database_outage_and_logs_it_once(pool: PgPool) {
    let (proxy_port, upstream, proxied) = crate::daemon_support::proxied_database(&pool);
    let env = TestEnv::with_database_url(proxied, database_url(&pool).1, "");

    // Started while the database is unreachable: alive, not ready.
    let daemon = Daemon::start(&env, &[]);
    eventually(Duration::from_secs(10), "/healthz", || async {
        daemon.get("/healthz").await.is_some()
    })
    .await;
    assert_eq!(daemon.get("/readyz").await.unwrap().0, 503);

    let proxy = Proxy::start(proxy_port, upstream.clone()).await;
    daemon.wait_ready().await;

    proxy.cut().await;
    eventually(
        Duration::from_secs(10),
        "/readyz to report the outage",
        || async { matches!(daemon.get("/readyz").await, Some((503, _))) },
    )
    .await;
    let (_, metrics) = daemon.get("/metrics").await.unwrap();
    assert!(metrics.contains("kodo_access_database_up 0"), "{metrics}");
    // Many probes fail during the outage (one every 200 ms); the log says so once.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        daemon
            .log()
            .matches("database unreachable, not ready")
            .count(),
        1,
        "{}",
        daemon.log()
    );

    let _proxy = Proxy::start(proxy_port, upstream).await;
    daemon.wait_ready().await;
    let (code, log) = daemon.terminate().await;
    assert_eq!(code, 0, "{log}");
    assert_eq!(log.matches("database reachable again").count(), 1, "{log}");
}

#[sqlx::test(migrations = false)]
async fn waits_unready_until_the_schema_is_migrated(pool: PgPool) {
    let env = TestEnv::new(&pool);
    let daemon = Daemon::start(&env, &[]);
    // Every migration the build carries is pending on the fresh database.
    let migrations = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations"))
        .unwrap()
        .filter(|entry| {
            entry
                .as_ref()
                .is_ok_and(|entry| entry.path().extension().is_some_and(|e| e == "sql"))
        })
        .count();
    let expected = format!(
        "database schema is behind by {migrations} migration(s): run `kodo-access migrate`"
    );
    eventually(
        Duration::from_secs(10),
        "the schema problem in the log",
        || async { daemon.log().contains(&expected) },
    )
    .await;
    assert_eq!(daemon.get("/readyz").await.unwrap().0, 503);
    assert!(
        env.run(&["migrate"])
            .success()
            .stdout
            .contains("database schema is current")
    );
    daemon.wait_ready().await;
    // Migrating again is harmless.
    env.run(&["migrate"]).success();
    let (code, log) = daemon.terminate().await;
    assert_eq!(code, 0, "{log}");
}

#[sqlx::test]
async fn scrapes_arriving_together_read_the_database_once(pool: PgPool) {
    let env = TestEnv::new(&pool);
    env.add_org("contoso", TENANT_A, CLIENT_A, "Abc8Q~x")
        .success();
    let daemon = Daemon::start(&env, &[]);
    daemon.wait_ready().await;
    let (_, database) = database_url(&pool);
    let committed = || async {
        sqlx::query_scalar::<_, i64>("SELECT xact_commit FROM pg_stat_database WHERE datname = $1")
            .bind(&database)
            .fetch_one(&pool)
            .await
            .unwrap()
    };
    let before = committed().await;
    // Three waves of 64 scrapers at once (each read of the fleet is three statements).
    for _ in 0..3 {
        let scrapes: Vec<_> = (0..64).map(|_| daemon.get("/metrics")).collect();
        for scrape in futures_util::future::join_all(scrapes).await {
            let (status, metrics) = scrape.expect("every scrape answered");
            assert_eq!(status, 200);
            assert!(metrics.contains("kodo_access_organizations{enabled=\"true\"} 1"));
        }
    }
    // The daemon's connections close on exit, and their statistics with them.
    let (code, log) = daemon.terminate().await;
    assert_eq!(code, 0, "{log}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let transactions = committed().await - before;
    assert!(
        transactions < 100,
        "192 scrapes cost {transactions} database transactions"
    );
}
