//! Test rig: a per-test database (from `#[sqlx::test]`), a config and master key in a
//! temporary directory, and helpers that run the real `kodo-access` binary as a user would.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use sqlx::PgPool;
use tempfile::TempDir;

pub const BINARY: &str = env!("CARGO_BIN_EXE_kodo-access");

pub struct TestEnv {
    pub dir: TempDir,
    pub database_url: String,
    pub config_path: PathBuf,
    pub key_path: PathBuf,
    pub http_port: u16,
}

/// What a command printed and how it ended.
#[derive(Debug)]
pub struct Outcome {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Outcome {
    #[track_caller]
    pub fn success(&self) -> &Self {
        assert_eq!(self.code, 0, "expected success, got {self:#?}");
        self
    }
    #[track_caller]
    pub fn fails_with(&self, code: i32, message: &str) -> &Self {
        assert_eq!(
            self.code, code,
            "expected exit status {code}, got {self:#?}"
        );
        assert!(
            self.stderr.contains(message),
            "expected stderr to contain {message:?}, got {self:#?}"
        );
        self
    }
}

/// The URL of the per-test database that `#[sqlx::test]` created for `pool`.
pub fn database_url(pool: &PgPool) -> (String, String) {
    let name = pool
        .connect_options()
        .get_database()
        .expect("test database name")
        .to_string();
    let base = std::env::var("DATABASE_URL").expect("DATABASE_URL is set by scripts/test");
    let mut url = url::Url::parse(&base).expect("DATABASE_URL is a URL");
    url.set_path(&format!("/{name}"));
    (url.to_string(), name)
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl TestEnv {
    /// A configuration for the per-test database, with a fresh master key.
    pub fn new(pool: &PgPool) -> TestEnv {
        let (database_url, database_name) = database_url(pool);
        Self::with_database_url(database_url, database_name, "")
    }

    /// As [`TestEnv::new`], with extra TOML appended to the configuration.
    pub fn with_extra(pool: &PgPool, extra: &str) -> TestEnv {
        let (database_url, database_name) = database_url(pool);
        Self::with_database_url(database_url, database_name, extra)
    }

    pub fn with_database_url(database_url: String, database_name: String, extra: &str) -> TestEnv {
        let dir = tempfile::tempdir().unwrap();
        let key_path = dir.path().join("master.key");
        let config_path = dir.path().join("config.toml");
        let http_port = free_port();
        let _ = database_name;
        let env = TestEnv {
            dir,
            database_url,
            config_path,
            key_path,
            http_port,
        };
        env.run(&["key", "generate", "--out", env.key_path.to_str().unwrap()])
            .success();
        env.write_config(extra);
        env
    }

    pub fn write_config(&self, extra: &str) {
        self.write_config_with_keys(&self.key_path, &[], extra);
    }

    /// Writes the configuration with `current` as the master key and `previous` keys.
    pub fn write_config_with_keys(&self, current: &Path, previous: &[&Path], extra: &str) {
        let previous: Vec<String> = previous
            .iter()
            .map(|p| format!("\"{}\"", p.display()))
            .collect();
        let config = format!(
            "[database]\nurl = \"{}\"\nhealth_interval = \"200ms\"\nconnect_timeout = \"2s\"\n\n[crypto]\nmaster_key_file = \"{}\"\nprevious_key_files = [{}]\n\n[http]\nlisten = \"127.0.0.1:{}\"\n\n[daemon]\nshutdown_timeout = \"5s\"\n\n{extra}\n",
            self.database_url,
            current.display(),
            previous.join(", "),
            self.http_port
        );
        std::fs::write(&self.config_path, config).unwrap();
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(BINARY);
        command
            .arg("--config")
            .arg(&self.config_path)
            .args(args)
            .env_remove("RUST_LOG")
            .env_remove("NOTIFY_SOCKET")
            .env_remove("CREDENTIALS_DIRECTORY")
            .env("USER", "tester");
        command
    }

    pub fn run(&self, args: &[&str]) -> Outcome {
        self.run_with_stdin(args, "")
    }

    pub fn run_with_stdin(&self, args: &[&str], stdin: &str) -> Outcome {
        run_command(self.command(args), stdin)
    }

    /// As [`TestEnv::run`], without blocking the test's async runtime (needed when the
    /// command talks to a server that runs inside the test, like the simulated cloud).
    pub async fn exec(&self, args: &[&str]) -> Outcome {
        self.exec_with_stdin(args, "").await
    }

    pub async fn exec_with_stdin(&self, args: &[&str], stdin: &str) -> Outcome {
        let command = self.command(args);
        let stdin = stdin.to_string();
        tokio::task::spawn_blocking(move || run_command(command, &stdin))
            .await
            .unwrap()
    }

    /// Registers an organization through the CLI, secret on standard input.
    pub fn add_org(&self, name: &str, tenant: &str, client: &str, secret: &str) -> Outcome {
        self.run_with_stdin(
            &[
                "org",
                "add",
                "--name",
                name,
                "--tenant-id",
                tenant,
                "--client-id",
                client,
            ],
            secret,
        )
    }
}

/// Runs a command with `stdin` on its standard input; what it printed and how it ended.
pub fn run_command(mut command: Command, stdin: &str) -> Outcome {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the command");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    Outcome {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// Asserts that `promtool check metrics` finds nothing to say about an exposition.
#[track_caller]
pub fn assert_promtool_clean(metrics: &str) {
    let mut command = Command::new("promtool");
    command.args(["check", "metrics"]);
    let outcome = run_command(command, metrics);
    let findings = format!("{}{}", outcome.stdout, outcome.stderr);
    assert!(
        outcome.code == 0 && findings.trim().is_empty(),
        "promtool findings:\n{findings}\n{metrics}"
    );
}

/// Writes `content` to a file with the given mode.
pub fn write_file(path: &Path, content: &str, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, content).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// Polls `condition` every 50 ms until it holds or `timeout` passes.
pub async fn eventually<F, Fut>(timeout: Duration, what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if condition().await {
            return;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub const TENANT_A: &str = "6f1c3f2e-4c55-4a8b-9d2e-0b7c1a2d3e4f";
pub const CLIENT_A: &str = "0d9a8b7c-6e5f-4a3b-8c2d-1e0f9a8b7c6d";
pub const TENANT_B: &str = "a1b2c3d4-e5f6-4789-8abc-def012345678";
pub const CLIENT_B: &str = "12345678-9abc-4def-8123-456789abcdef";
