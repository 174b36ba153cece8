//! A fleet of due organizations (each its own tenant and app, each secret expiring in five
//! days) registered in one database, with the file deliverer, and the checks that matter
//! after any fault: every rotation finished exactly once, and every app holds exactly one
//! secret, the one kodo-access holds and the backup server has, and it works.

use std::time::Duration;

use secrecy::SecretString;
use sqlx::PgPool;

use crate::daemon_support::Daemon;
use crate::sim_support::Sim;
use crate::support::*;

pub fn tenant(i: usize) -> uuid::Uuid {
    uuid::Uuid::new_v5(
        &uuid::Uuid::NAMESPACE_OID,
        format!("fleet-tenant-{i}").as_bytes(),
    )
}

pub fn app(i: usize) -> uuid::Uuid {
    uuid::Uuid::new_v5(
        &uuid::Uuid::NAMESPACE_OID,
        format!("fleet-app-{i}").as_bytes(),
    )
}

pub fn key(i: usize) -> uuid::Uuid {
    uuid::Uuid::new_v5(
        &uuid::Uuid::NAMESPACE_OID,
        format!("fleet-key-{i}").as_bytes(),
    )
}

pub fn name(i: usize) -> String {
    format!("org-{i:04}")
}

pub struct Fleet {
    pub sim: Sim,
    pub env: TestEnv,
    pub backup_dir: tempfile::TempDir,
    pub size: usize,
}

impl Fleet {
    /// `faults`: lines of the simulator's `[faults]`; `rotation`: lines of `[rotation]`;
    /// `database_url`: another way to the test database (a proxy), or the direct one.
    pub async fn start(
        pool: &PgPool,
        size: usize,
        faults: &str,
        rotation: &str,
        database_url: Option<String>,
    ) -> Fleet {
        let mut scenario = format!("[faults]\n{faults}\n");
        for i in 0..size {
            scenario.push_str(&format!(
                "[[tenants]]\nid = \"{}\"\n[[tenants.apps]]\napp_id = \"{}\"\npermissions = \"all\"\n[[tenants.apps.secrets]]\nvalue = \"Flt8Q~fleet-secret-{i:04}\"\nkey_id = \"{}\"\ndisplay_name = \"by hand\"\nexpires_in_days = 5\n",
                tenant(i),
                app(i),
                key(i)
            ));
        }
        let sim = Sim::start(&scenario).await;
        let backup_dir = tempfile::tempdir().unwrap();
        let extra = format!(
            "[rotation]\n{rotation}\npickup_interval = \"1s\"\n[[rotation.file]]\ndirectory = \"{}\"\nmode = \"0600\"\n",
            backup_dir.path().display()
        );
        let config = crate::checks::config(&sim, &extra);
        let env = match database_url {
            None => TestEnv::with_extra(pool, &config),
            Some(url) => {
                TestEnv::with_database_url(url, crate::support::database_url(pool).1, &config)
            }
        };
        let expires = (chrono::Utc::now() + chrono::Duration::days(5)).to_rfc3339();
        let organizations: Vec<serde_json::Value> = (0..size)
            .map(|i| {
                serde_json::json!({
                    "name": name(i),
                    "tenant_id": tenant(i),
                    "client_id": app(i),
                    "secret": format!("Flt8Q~fleet-secret-{i:04}"),
                    "secret_id": key(i),
                    "secret_expires": expires,
                    "cloud": "sim",
                })
            })
            .collect();
        let import = env.path("organizations.json");
        write_file(
            &import,
            &serde_json::to_string(&organizations).unwrap(),
            0o600,
        );
        env.exec(&["org", "import", import.to_str().unwrap()])
            .await
            .success();
        Fleet {
            sim,
            env,
            backup_dir,
            size,
        }
    }

    /// A daemon with its own HTTP port.
    pub fn daemon(&self, extra_env: &[(&str, &str)]) -> Daemon {
        let port = free_port();
        let listen = format!("127.0.0.1:{port}");
        let mut environment = vec![("KODO_ACCESS__HTTP__LISTEN", listen.as_str())];
        environment.extend_from_slice(extra_env);
        let mut daemon = Daemon::start(&self.env, &environment);
        daemon.port = port;
        daemon
    }

    /// Waits until every organization's rotation finished; fails at once when any
    /// organization has a second rotation or a rotation ended otherwise than succeeded.
    pub async fn wait_all_finished(&self, pool: &PgPool, within: Duration, daemons: &[&Daemon]) {
        let deadline = tokio::time::Instant::now() + within;
        let tail = || {
            daemons
                .iter()
                .map(|daemon| {
                    let log = daemon.log();
                    let lines: Vec<&str> = log.lines().rev().take(12).collect();
                    lines.into_iter().rev().collect::<Vec<_>>().join("\n")
                })
                .collect::<Vec<_>>()
                .join("\n---\n")
        };
        loop {
            let (rotations, organizations, succeeded, other): (i64, i64, i64, i64) =
                sqlx::query_as(
                    "SELECT count(*), count(DISTINCT organization_id),
                            count(*) FILTER (WHERE outcome = 'succeeded'),
                            count(*) FILTER (WHERE finished_at IS NOT NULL AND outcome <> 'succeeded')
                     FROM rotations",
                )
                .fetch_one(pool)
                .await
                .unwrap();
            assert_eq!(
                rotations,
                organizations,
                "an organization was rotated twice ({rotations} rotations of {organizations})\n{}",
                tail()
            );
            assert_eq!(other, 0, "a rotation ended unsuccessfully\n{}", tail());
            if succeeded == self.size as i64 {
                return;
            }
            if tokio::time::Instant::now() > deadline {
                let steps: Vec<(String, Option<String>, i64)> = sqlx::query_as(
                    "SELECT step, failure_reason, count(*) FROM rotations GROUP BY 1, 2 ORDER BY 1, 2",
                )
                .fetch_all(pool)
                .await
                .unwrap();
                panic!(
                    "{succeeded} of {} rotations finished within {within:?}: {steps:?}\n{}",
                    self.size,
                    tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Microsoft created exactly one secret per app: none thrown away and made again.
    pub async fn assert_one_add_password_each(&self) {
        let counters = self.sim.counters().await;
        for i in 0..self.size {
            assert_eq!(
                counters["add_password"][app(i).to_string()].as_u64(),
                Some(1),
                "{}: addPassword calls",
                name(i)
            );
        }
    }

    /// Every app holds exactly one secret: the current one in the database, created by its
    /// organization's one rotation, the one in the backup server's file, and it works.
    pub async fn assert_one_working_secret_each(&self, pool: &PgPool) {
        let state = self.sim.state().await;
        let client = crate::sim_support::client(kodo_access::microsoft::RetryPolicy::NONE);
        for i in 0..self.size {
            let (current_key, rotation_id): (Option<uuid::Uuid>, Option<uuid::Uuid>) =
                sqlx::query_as(
                    "SELECT c.key_id, c.rotation_id FROM credentials c JOIN organizations o ON o.id = c.organization_id
                     WHERE o.name = $1 AND c.status = 'current'",
                )
                .bind(name(i))
                .fetch_one(pool)
                .await
                .unwrap();
            let tenant_state = state["tenants"]
                .as_array()
                .unwrap()
                .iter()
                .find(|t| t["id"] == tenant(i).to_string())
                .unwrap();
            let secrets = tenant_state["apps"][0]["secrets"].as_array().unwrap();
            assert_eq!(secrets.len(), 1, "{}: {secrets:?}", name(i));
            assert_eq!(
                secrets[0]["key_id"].as_str().map(|k| k.parse().unwrap()),
                current_key,
                "{}",
                name(i)
            );
            assert_eq!(
                secrets[0]["display_name"],
                format!("kodo-access rotation {}", rotation_id.unwrap()),
                "{}",
                name(i)
            );
            let delivered: serde_json::Value = serde_json::from_slice(
                &std::fs::read(self.backup_dir.path().join(format!("{}.json", name(i)))).unwrap(),
            )
            .unwrap();
            assert_eq!(
                delivered["secret_id"].as_str().map(|k| k.parse().unwrap()),
                current_key,
                "{}: the backup server has the current secret",
                name(i)
            );
            let secret =
                SecretString::from(delivered["client_secret"].as_str().unwrap().to_string());
            client
                .token(
                    &self
                        .sim
                        .endpoints(&tenant(i).to_string(), &app(i).to_string()),
                    &secret,
                    kodo_access::microsoft::Resource::Graph,
                )
                .await
                .unwrap_or_else(|error| panic!("{}: the delivered secret works: {error}", name(i)));
        }
    }
}
