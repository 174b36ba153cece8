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
fn unit_file_exposure_is_at_most_2_0() {
    let dir = tempfile::tempdir().unwrap();
    let path = unit_with_binary(dir.path());
    let output = std::process::Command::new("systemd-analyze")
        .args(["security", "--offline=yes", "--threshold=20"])
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
    assert!(score <= 2.0, "exposure {score} > 2.0:\n{text}");
    assert!(
        output.status.success(),
        "systemd-analyze security --threshold=20 failed:\n{text}"
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
