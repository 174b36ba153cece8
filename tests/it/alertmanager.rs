//! A real Prometheus Alertmanager (Debian's prometheus-alertmanager) on a free loopback
//! port, for end-to-end alert tests.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub struct Alertmanager {
    child: Option<Child>,
    pub port: u16,
    dir: tempfile::TempDir,
}

impl Alertmanager {
    /// Starts one on `port` (or a free one) and waits until it is ready.
    pub async fn start(port: Option<u16>) -> Alertmanager {
        let dir = tempfile::tempdir().unwrap();
        let port = port.unwrap_or_else(crate::support::free_port);
        let mut alertmanager = Alertmanager {
            child: None,
            port,
            dir,
        };
        alertmanager.spawn().await;
        alertmanager
    }

    async fn spawn(&mut self) {
        let config = self.dir.path().join("alertmanager.yml");
        std::fs::write(
            &config,
            "route:\n  receiver: blackhole\n  group_wait: 1s\nreceivers:\n  - name: blackhole\n",
        )
        .unwrap();
        let child = Command::new("prometheus-alertmanager")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.path={}",
                self.dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{}", self.port))
            .arg("--cluster.listen-address=")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus-alertmanager is installed (scripts/ensure-deps)");
        self.child = Some(child);
        let url = format!("{}/-/ready", self.url());
        crate::support::eventually(Duration::from_secs(15), "Alertmanager ready", || async {
            reqwest::get(&url)
                .await
                .map(|r| r.status().is_success())
                .unwrap_or(false)
        })
        .await;
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The alerts Alertmanager holds as active (`GET /api/v2/alerts`).
    pub async fn alerts(&self) -> Vec<serde_json::Value> {
        reqwest::get(format!(
            "{}/api/v2/alerts?active=true&silenced=true&inhibited=true",
            self.url()
        ))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
    }

    pub async fn active_names(&self) -> Vec<(String, String)> {
        let now = chrono::Utc::now();
        let mut names: Vec<(String, String)> = self
            .alerts()
            .await
            .iter()
            .filter(|alert| alert["status"]["state"] == "active")
            .filter(|alert| {
                alert["endsAt"]
                    .as_str()
                    .and_then(|t| t.parse::<chrono::DateTime<chrono::Utc>>().ok())
                    .is_none_or(|end| end > now)
            })
            .map(|alert| {
                (
                    alert["labels"]["organization"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                    alert["labels"]["alertname"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                )
            })
            .collect();
        names.sort();
        names
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Alertmanager {
    fn drop(&mut self) {
        self.stop();
    }
}
