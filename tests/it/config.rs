//! `kodo-access config check` as an operator meets it.

use crate::support::*;

fn run(args: &[&str], envs: &[(&str, &str)]) -> Outcome {
    let output = std::process::Command::new(BINARY)
        .args(args)
        .env_remove("CREDENTIALS_DIRECTORY")
        .env_remove("KODO_ACCESS_CONFIG")
        .envs(envs.iter().copied())
        .output()
        .unwrap();
    Outcome {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

#[test]
fn bad_configuration_names_the_key_and_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    let cases = [
        (
            "[database]\nmax_connection = 5\n",
            "unknown field `max_connection`",
        ),
        (
            "[database]\nmax_connections = -1\n",
            "database.max_connections",
        ),
        ("[http]\nlisten = \"nowhere\"\n", "http.listen"),
        (
            "[jobs.housekeeping]\nschedule = \"every day\"\n",
            "jobs.housekeeping.schedule",
        ),
        ("[database\n", "invalid configuration"),
    ];
    for (content, expected) in cases {
        std::fs::write(&path, content).unwrap();
        run(
            &["--config", path.to_str().unwrap(), "config", "check"],
            &[],
        )
        .fails_with(2, expected);
    }
    run(
        &["--config", "/nonexistent/config.toml", "config", "check"],
        &[],
    )
    .fails_with(2, "does not exist");
    run(
        &["config", "check"],
        &[("KODO_ACCESS__DAEMON__SHUTDOWN_TIMEOUT", "0s")],
    )
    .fails_with(
        2,
        "daemon.shutdown_timeout: expected a duration greater than zero",
    );
}

#[test]
fn config_check_reads_systemd_credentials_and_prints_no_secret() {
    let dir = tempfile::tempdir().unwrap();
    let credentials = dir.path().join("credentials");
    std::fs::create_dir(&credentials).unwrap();
    let key = credentials.join("master-key");
    let generated = run(&["key", "generate", "--out", key.to_str().unwrap()], &[]);
    let key_id = generated
        .success()
        .stdout
        .split_whitespace()
        .nth(3)
        .unwrap()
        .to_string();
    write_file(
        &credentials.join("database-password"),
        "pg-Pa55word-xyz\n",
        0o400,
    );
    let webhook_key = "7f3e9a1c5b2d8e4f6a0c1b3d5e7f9a2c";
    write_file(&credentials.join("webhook-key"), webhook_key, 0o400);
    let config = dir.path().join("config.toml");
    let write = |key_credential: &str| {
        std::fs::write(
            &config,
            format!("[database]\nurl = \"postgres://kodo:inline-Pa55@db.example/kodo\"\npassword_credential = \"database-password\"\n\n[[rotation.webhook]]\nname = \"backup\"\nurl = \"https://backup.example/credentials\"\nsecret_credential = \"{key_credential}\"\n\n[[rotation.file]]\ndirectory = \"/var/lib/kodo/credentials\"\n"),
        )
        .unwrap()
    };
    write("webhook-key");
    let key_content = std::fs::read_to_string(&key).unwrap();
    let outcome = run(
        &["--config", config.to_str().unwrap(), "config", "check"],
        &[("CREDENTIALS_DIRECTORY", credentials.to_str().unwrap())],
    );
    outcome.success();
    assert!(
        outcome.stdout.contains(&format!("master key: {key_id}")),
        "{outcome:?}"
    );
    assert!(
        outcome
            .stdout
            .contains("<redacted: systemd credential database-password>"),
        "{outcome:?}"
    );
    // The rotation section is shown too, its webhook key only by where it comes from.
    assert!(
        outcome.stdout.contains("[rotation]")
            && outcome
                .stdout
                .contains("webhook = \"https://backup.example/credentials\"")
            && outcome
                .stdout
                .contains("file = \"/var/lib/kodo/credentials\"")
            && outcome
                .stdout
                .contains("<redacted: systemd credential webhook-key>"),
        "{outcome:?}"
    );
    for secret in [
        "pg-Pa55word-xyz",
        "inline-Pa55",
        key_content.trim(),
        webhook_key,
    ] {
        assert!(
            !outcome.stdout.contains(secret) && !outcome.stderr.contains(secret),
            "leaked {secret}"
        );
    }
    // config check reads the webhook's signing key as a delivery would: one too short to
    // sign with fails here, not at the first rotation.
    write("database-password");
    let short = run(
        &["--config", config.to_str().unwrap(), "config", "check"],
        &[("CREDENTIALS_DIRECTORY", credentials.to_str().unwrap())],
    );
    assert_eq!(short.code, 1, "{short:?}");
    assert!(
        short.stderr.contains(
            "signing key (systemd credential database-password) is shorter than 32 bytes"
        ) && !short.stderr.contains("pg-Pa55word-xyz"),
        "{short:?}"
    );
    // The same configuration outside systemd: the credential is missing, and it says so.
    std::fs::write(
        &config,
        "[database]\npassword_credential = \"database-password\"\n",
    )
    .unwrap();
    run(&["--config", config.to_str().unwrap(), "config", "check"], &[])
        .fails_with(2, "database.password_credential: systemd credential \"database-password\" requested but $CREDENTIALS_DIRECTORY is not set");
}

#[test]
fn the_shipped_example_configuration_is_valid() {
    // Its secrets live in /etc; check everything else.
    let outcome = run(
        &[
            "--config",
            concat!(env!("CARGO_MANIFEST_DIR"), "/config/example.toml"),
            "config",
            "check",
        ],
        &[],
    );
    outcome.fails_with(2, "/etc/kodo-access/database-password");
    assert!(
        !outcome.stderr.contains("invalid configuration key"),
        "{outcome:?}"
    );
}

#[test]
fn config_check_says_when_rotation_has_nowhere_to_deliver() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(&config, "").unwrap();
    let outcome = run(
        &["--config", config.to_str().unwrap(), "config", "check"],
        &[],
    );
    assert!(
        outcome.success().stdout.contains("nothing will be rotated"),
        "{outcome:?}"
    );
    std::fs::write(
        &config,
        "[[rotation.file]]\ndirectory = \"/var/lib/kodo-access/credentials\"\n",
    )
    .unwrap();
    let outcome = run(
        &["--config", config.to_str().unwrap(), "config", "check"],
        &[],
    );
    assert!(
        !outcome.success().stdout.contains("nothing will be rotated"),
        "{outcome:?}"
    );
}

#[test]
fn secret_bearing_sinks_need_https_off_loopback_and_urls_print_no_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    let key = dir.path().join("hook-key");
    write_file(&key, &"k".repeat(40), 0o600);
    let key = key.display();
    let refused = [
        (
            format!(
                "[[alerts.webhook]]\nname = \"ops\"\nurl = \"http://hooks.example/h?token=abc123\"\nsecret_file = \"{key}\"\n"
            ),
            "alerts.webhook[0].url",
        ),
        (
            format!(
                "[[rotation.webhook]]\nurl = \"http://backup.example/credentials\"\nsecret_file = \"{key}\"\n"
            ),
            "rotation.webhook[0].url",
        ),
        (
            "[[alerts.alertmanager]]\nname = \"am\"\nurl = \"http://am.example:9093\"\n"
                .to_string(),
            "allow_insecure_http = true",
        ),
    ];
    for (content, expected) in refused {
        std::fs::write(&path, content).unwrap();
        let outcome = run(
            &["--config", path.to_str().unwrap(), "config", "check"],
            &[],
        );
        outcome.fails_with(2, expected);
        assert!(!outcome.stderr.contains("abc123"), "{outcome:?}");
    }
    // Allowed: loopback, https, and plain http to an Alertmanager the operator opted in for;
    // printed without user info or query values.
    std::fs::write(
        &path,
        format!(
            "[database]\nurl = \"postgres://kodo@db.example/kodo?password=Query-Pa55&sslmode=require\"\n\
             [[alerts.alertmanager]]\nname = \"am\"\nurl = \"http://admin:Am-Pa55@am.example:9093\"\nallow_insecure_http = true\n\
             [[alerts.webhook]]\nname = \"ops\"\nurl = \"https://hooks.example/h?token=Tok-abc123\"\nsecret_file = \"{key}\"\n\
             [[alerts.webhook]]\nname = \"local\"\nurl = \"http://127.0.0.1:9000/h\"\nsecret_file = \"{key}\"\n"
        ),
    )
    .unwrap();
    let outcome = run(
        &["--config", path.to_str().unwrap(), "config", "check"],
        &[],
    );
    outcome.success();
    for secret in ["Query-Pa55", "Am-Pa55", "admin", "Tok-abc123"] {
        assert!(
            !outcome.stdout.contains(secret) && !outcome.stderr.contains(secret),
            "printed {secret}: {outcome:?}"
        );
    }
    assert!(
        outcome.stdout.contains("allow_insecure_http = true")
            && outcome.stdout.contains("token=REDACTED"),
        "{outcome:?}"
    );
}
