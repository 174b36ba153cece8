//! The shipped unit file passes `systemd-analyze verify` and the hardening threshold.

const UNIT: &str = include_str!("../../systemd/kodo-access.service");

fn unit_with_binary(dir: &std::path::Path) -> std::path::PathBuf {
    // verify needs ExecStart's binary to exist: point it at the one cargo built.
    let unit = UNIT.replace("/usr/bin/kodo-access", crate::support::BINARY);
    assert_ne!(unit, UNIT, "the unit runs /usr/bin/kodo-access");
    let path = dir.join("kodo-access.service");
    std::fs::write(&path, unit).unwrap();
    path
}

#[test]
fn unit_file_passes_systemd_analyze_verify() {
    let dir = tempfile::tempdir().unwrap();
    let path = unit_with_binary(dir.path());
    let output = std::process::Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success() && text.trim().is_empty(),
        "systemd-analyze verify:\n{text}"
    );
}

#[test]
fn unit_file_exposure_is_at_most_1_2() {
    let dir = tempfile::tempdir().unwrap();
    let path = unit_with_binary(dir.path());
    let output = std::process::Command::new("systemd-analyze")
        .args(["security", "--offline=yes", "--threshold=12"])
        .arg(&path)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    let score: f64 = text
        .lines()
        .find_map(|line| {
            line.split("Overall exposure level for kodo-access.service: ")
                .nth(1)
        })
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|score| score.parse().ok())
        .unwrap_or_else(|| panic!("no exposure score in:\n{text}"));
    assert!(score <= 1.2, "exposure {score} > 1.2:\n{text}");
    assert!(
        output.status.success(),
        "systemd-analyze security --threshold=12 failed:\n{text}"
    );
}

#[test]
fn unit_declares_what_the_daemon_relies_on() {
    for line in [
        "Type=notify",
        "WatchdogSec=",
        "LoadCredential=master-key:",
        "StateDirectory=kodo-access",
        "User=kodo-access",
        "Restart=on-failure",
        "TimeoutStopSec=30s",
    ] {
        assert!(
            UNIT.lines().any(|l| l.starts_with(line)),
            "unit lacks {line}"
        );
    }
    // The daemon's default shutdown deadline must be shorter than TimeoutStopSec.
    let defaults = include_str!("../../config/default.toml");
    assert!(defaults.contains("shutdown_timeout = \"20s\""));
}

#[test]
fn the_unit_keeps_secrets_out_of_core_dumps_and_swap_and_bounds_the_daemon() {
    let unit = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/systemd/kodo-access.service"
    ))
    .unwrap();
    for line in [
        "LimitCORE=0",
        "MemorySwapMax=0",
        "MemoryMax=",
        "TasksMax=",
        "PrivateMounts=yes",
        "IPAddressDeny=169.254.0.0/16",
    ] {
        assert!(
            unit.lines().any(|l| l.starts_with(line)),
            "the unit lacks {line}"
        );
    }
}

#[test]
fn every_command_marks_itself_non_dumpable() {
    // Run as nobody: the kernel gives a non-dumpable process's /proc files to root, so a
    // core dump or another user's debugger cannot read its memory.
    let mut child = std::process::Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            crate::support::BINARY,
        ])
        .args(["--config", "/nonexistent", "config", "check"])
        // Held right after it started (a test hook), so its /proc files can be looked at.
        .env("FAILPOINTS", "command-started=return")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stderr.take().unwrap()),
        &mut line,
    )
    .unwrap();
    assert!(line.contains("failpoint command-started reached"), "{line}");
    let pid = child.id();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let uid_line = status
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .unwrap()
        .to_string();
    let owner = std::os::unix::fs::MetadataExt::uid(
        &std::fs::metadata(format!("/proc/{pid}/environ")).unwrap(),
    );
    let _ = child.kill();
    let _ = child.wait();
    assert!(uid_line.contains("65534"), "{uid_line}");
    assert_eq!(
        owner, 0,
        "its /proc files belong to its user: it is dumpable"
    );
}
