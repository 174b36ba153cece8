//! A real Prometheus Alertmanager (Debian's prometheus-alertmanager) on a free loopback
//! port, for end-to-end alert tests.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub struct Alertmanager {
    child: Option<Child>,
    pub port: u16,
    dir: tempfile::TempDir,
    /// Its `--web.config.file` (TLS, client certificates, basic auth), if any.
    web_config: Option<String>,
    /// How the test itself talks to it.
    client: reqwest::Client,
}

impl Alertmanager {
    /// Starts one on `port` (or a free one) and waits until it is ready.
    pub async fn start(port: Option<u16>) -> Alertmanager {
        Self::start_with(port, None, reqwest::Client::new()).await
    }

    /// Starts one with a web configuration (served over https when it has
    /// `tls_server_config`), reached by the test through `client`.
    pub async fn start_with(
        port: Option<u16>,
        web_config: Option<String>,
        client: reqwest::Client,
    ) -> Alertmanager {
        let dir = tempfile::tempdir().unwrap();
        let port = port.unwrap_or_else(crate::support::free_port);
        let mut alertmanager = Alertmanager {
            child: None,
            port,
            dir,
            web_config,
            client,
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
        let mut command = Command::new("prometheus-alertmanager");
        if let Some(web) = &self.web_config {
            let path = self.dir.path().join("web.yml");
            std::fs::write(&path, web).unwrap();
            command.arg(format!("--web.config.file={}", path.display()));
        }
        let child = command
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
            self.client
                .get(&url)
                .send()
                .await
                .map(|r| r.status().is_success())
                .unwrap_or(false)
        })
        .await;
    }

    pub fn url(&self) -> String {
        match &self.web_config {
            Some(web) if web.contains("tls_server_config") => {
                format!("https://localhost:{}", self.port)
            }
            _ => format!("http://127.0.0.1:{}", self.port),
        }
    }

    /// The alerts Alertmanager holds as active (`GET /api/v2/alerts`).
    pub async fn alerts(&self) -> Vec<serde_json::Value> {
        self.client
            .get(format!(
                "{}/api/v2/alerts?active=true&silenced=true&inhibited=true",
                self.url()
            ))
            .send()
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
