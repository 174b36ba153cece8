//! A `kodo-access run` child process with its log captured, plus a TCP proxy in front of
//! PostgreSQL that a test can cut and restore to simulate a database outage.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::AsyncBufReadExt;
use tokio::process::Child;
use tokio_util::sync::CancellationToken;

use crate::support::{BINARY, TestEnv};

pub struct Daemon {
    pub child: Child,
    pub log: Arc<Mutex<String>>,
    pub port: u16,
}

impl Daemon {
    pub fn start(env: &TestEnv, extra_env: &[(&str, &str)]) -> Daemon {
        // systemd sets WATCHDOG_PID to the service's pid beside WATCHDOG_USEC; a shell that
        // execs the daemon knows that pid in advance.
        let watchdog = extra_env.iter().any(|(name, _)| *name == "WATCHDOG_USEC");
        let mut command = if watchdog {
            let mut command = tokio::process::Command::new("sh");
            command.args(["-c", "WATCHDOG_PID=$$ exec \"$0\" \"$@\"", BINARY]);
            command
        } else {
            tokio::process::Command::new(BINARY)
        };
        command
            .arg("--config")
            .arg(&env.config_path)
            .arg("run")
            .env_remove("RUST_LOG")
            .env_remove("NOTIFY_SOCKET")
            .env_remove("CREDENTIALS_DIRECTORY")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        for (name, value) in extra_env {
            command.env(name, value);
        }
        let mut child = command.spawn().expect("spawn kodo-access run");
        let log = Arc::new(Mutex::new(String::new()));
        let stderr = child.stderr.take().unwrap();
        let sink = log.clone();
        tokio::spawn(async move {
            let mut lines = tokio::io::BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let mut log = sink.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        Daemon {
            child,
            log,
            port: env.http_port,
        }
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    pub async fn get(&self, path: &str) -> Option<(u16, String)> {
        let url = format!("http://127.0.0.1:{}{path}", self.port);
        let response = reqwest::Client::new()
            .get(url)
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .ok()?;
        let status = response.status().as_u16();
        Some((status, response.text().await.ok()?))
    }

    pub async fn wait_ready(&self) {
        crate::support::eventually(
            Duration::from_secs(20),
            "the daemon to be ready",
            || async { matches!(self.get("/readyz").await, Some((200, _))) },
        )
        .await;
    }

    pub fn signal(&self, signal: &str) {
        let pid = self.child.id().expect("daemon still running").to_string();
        let status = std::process::Command::new("kill")
            .args([&format!("-{signal}"), &pid])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Sends SIGTERM and returns the exit code.
    pub async fn terminate(mut self) -> (i32, String) {
        self.signal("TERM");
        let status = tokio::time::timeout(Duration::from_secs(15), self.child.wait())
            .await
            .expect("daemon exits within 15 s of SIGTERM")
            .unwrap();
        // Let the log reader drain.
        tokio::time::sleep(Duration::from_millis(100)).await;
        (status.code().unwrap_or(-1), self.log())
    }
}

/// A way to the test database through a proxy: the proxy's port, PostgreSQL's address
/// (host:port) for `Proxy::start`, and the database URL through the proxy.
pub fn proxied_database(pool: &sqlx::PgPool) -> (u16, String, String) {
    let proxy_port = crate::support::free_port();
    let (direct_url, _) = crate::support::database_url(pool);
    let direct = url::Url::parse(&direct_url).unwrap();
    let upstream = format!(
        "{}:{}",
        direct.host_str().unwrap(),
        direct.port().unwrap_or(5432)
    );
    let mut proxied = direct;
    proxied.set_host(Some("127.0.0.1")).unwrap();
    proxied.set_port(Some(proxy_port)).unwrap();
    (proxy_port, upstream, proxied.to_string())
}

/// Forwards a local port to PostgreSQL until cut.
pub struct Proxy {
    cut: CancellationToken,
}

impl Proxy {
    pub async fn start(port: u16, upstream: String) -> Proxy {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("bind proxy port");
        let cut = CancellationToken::new();
        let token = cut.clone();
        tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            loop {
                tokio::select! {
                    _ = token.cancelled() => {
                        connections.abort_all();
                        return;
                    }
                    accepted = listener.accept() => {
                        let Ok((mut inbound, _)) = accepted else { continue };
                        let upstream = upstream.clone();
                        connections.spawn(async move {
                            if let Ok(mut outbound) = tokio::net::TcpStream::connect(upstream).await {
                                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                            }
                        });
                    }
                }
            }
        });
        Proxy { cut }
    }

    /// Closes the listener and every forwarded connection.
    pub async fn cut(self) {
        self.cut.cancel();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
