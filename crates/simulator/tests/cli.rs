//! The simulator's binary as a user runs it: Microsoft's own client library (MSAL for
//! Python) gets tokens from `kodo-simulator --tls`, and bad scenario files get clear errors.

#![allow(
    clippy::unwrap_used,
    clippy::cast_possible_truncation,
    clippy::cast_possible_wrap,
    clippy::cast_sign_loss,
    clippy::cast_lossless,
    reason = "tests: a failed unwrap is a failed test, and the numbers they cast are small"
)]

use std::io::BufRead;
use std::process::{Command, Stdio};

const TENANT: &str = "6f1c3f2e-4c55-4a8b-9d2e-0b7c1a2d3e4f";
const APP: &str = "0d9a8b7c-6e5f-4a3b-8c2d-1e0f9a8b7c6d";
const BINARY: &str = env!("CARGO_BIN_EXE_kodo-simulator");
/// What kodo-access requires, by name: the presets "all" and "backup" grant it.
const PERMISSIONS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../config/permissions.toml");

struct SimulateProcess {
    child: std::process::Child,
    url: String,
}

impl Drop for SimulateProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn simulate(args: &[&str]) -> SimulateProcess {
    let mut child = Command::new(BINARY)
        .args(["--permissions-file", PERMISSIONS])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut first_line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first_line)
        .unwrap();
    SimulateProcess {
        child,
        url: first_line.trim().to_string(),
    }
}

const SCENARIO: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../config/scenarios/demo.toml"
);
const DEMO_SECRET: &str = "Con8Q~contoso-demo-secret-0000000000000";

#[test]
fn msal_for_python_agrees_with_the_simulator_over_https() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    let sim = simulate(&[
        "--scenario",
        SCENARIO,
        "--listen",
        "127.0.0.1:0",
        "--tls",
        "--ca-out",
        ca.to_str().unwrap(),
    ]);
    assert!(sim.url.starts_with("https://localhost:"), "{}", sim.url);
    let output = Command::new("python3")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/msal_check.py"))
        .args([&sim.url, ca.to_str().unwrap(), TENANT, APP, DEMO_SECRET])
        // These override MSAL's `verify=` on this machine (toolchain notes).
        .env_remove("REQUESTS_CA_BUNDLE")
        .env_remove("CURL_CA_BUNDLE")
        .output()
        .expect("python3 runs (scripts/ensure-deps installs msal)");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "msal_check.py failed:\n{stderr}");
    let seen: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(seen["ok"], true, "{seen}");
    assert_eq!(seen["token_type"], "Bearer");
    assert_eq!(seen["tid"], TENANT);
    assert_eq!(seen["appid"], APP);
    let roles: Vec<&str> = seen["roles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();
    // Graph: the manifest's 39 required backup roles and Application.ReadWrite.OwnedBy.
    assert_eq!(roles.len(), 40);
    assert!(roles.contains(&"User.Read.All") && roles.contains(&"Application.ReadWrite.OwnedBy"));
    assert_eq!(seen["second_from_cache"], true);
    assert_eq!(seen["wrong_secret"]["error"], "invalid_client");
    assert_eq!(
        seen["wrong_secret"]["error_codes"],
        serde_json::json!([7000215])
    );
    assert_eq!(seen["wrong_secret"]["has_trace_id"], true);
    assert_eq!(seen["bad_scope"]["error"], "invalid_scope");
    assert_eq!(
        seen["bad_scope"]["error_codes"],
        serde_json::json!([1002012])
    );
}

fn certificate_pair(dir: &std::path::Path, name: &str) -> (String, String) {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).unwrap();
    let certificate = rcgen::CertificateParams::new(vec![format!("{name}.kodo-access.test")])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let (cert_path, key_path) = (
        dir.join(format!("{name}.crt")),
        dir.join(format!("{name}.key")),
    );
    std::fs::write(&cert_path, certificate.pem()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    (
        cert_path.to_string_lossy().into_owned(),
        key_path.to_string_lossy().into_owned(),
    )
}

#[test]
fn msal_for_python_gets_a_token_with_a_certificate_and_is_refused_an_unregistered_one() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    let sim = simulate(&[
        "--scenario",
        SCENARIO,
        "--listen",
        "127.0.0.1:0",
        "--tls",
        "--ca-out",
        ca.to_str().unwrap(),
    ]);
    let (cert, key) = certificate_pair(dir.path(), "registered");
    let (other_cert, other_key) = certificate_pair(dir.path(), "other");
    let output = Command::new("python3")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/msal_certificate_check.py"
        ))
        .args([&sim.url, ca.to_str().unwrap(), TENANT, APP])
        .args([&cert, &key, &other_cert, &other_key])
        .env_remove("REQUESTS_CA_BUNDLE")
        .env_remove("CURL_CA_BUNDLE")
        .output()
        .expect("python3 runs (scripts/ensure-deps installs msal)");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "msal_certificate_check.py failed:\n{stderr}"
    );
    let seen: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    // The simulator's thumbprint is what MSAL (the cryptography library) computes.
    assert_eq!(seen["thumbprint"], seen["sha1_thumbprint"], "{seen}");
    for mode in ["ps256", "rs256"] {
        let attempt = &seen[mode];
        assert_eq!(attempt["ok"], true, "{mode}: {attempt}");
        assert_eq!(attempt["appid"], APP);
        assert_eq!(attempt["tid"], TENANT);
        // A certificate-based token: what SharePoint REST requires.
        assert_eq!(attempt["appidacr"], "2", "{mode}: {attempt}");
        assert_eq!(attempt["roles"], 40, "{mode}: {attempt}");
    }
    for (mode, words) in [
        (
            "unregistered",
            "is not registered on application. [Reason - The key was not found.",
        ),
        (
            "wrong_key",
            "Client assertion contains an invalid signature.",
        ),
    ] {
        let attempt = &seen[mode];
        assert_eq!(attempt["ok"], false, "{mode}: {attempt}");
        assert_eq!(attempt["error"], "invalid_client", "{mode}: {attempt}");
        assert_eq!(
            attempt["error_codes"],
            serde_json::json!([700027]),
            "{mode}: {attempt}"
        );
        assert!(
            attempt["error_description"]
                .as_str()
                .unwrap()
                .contains(words),
            "{mode}: {attempt}"
        );
    }
}

#[test]
fn a_bad_scenario_file_gets_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    for (content, expected) in [
        ("[[tenants]]\nid = \"x\"\n", "invalid scenario (TOML)"),
        (
            "[[tenants]]\nid = \"6f1c3f2e-4c55-4a8b-9d2e-0b7c1a2d3e4f\"\n[[tenants.apps]]\napp_id = \"0d9a8b7c-6e5f-4a3b-8c2d-1e0f9a8b7c6d\"\npermissions = [\"graph:Nope\"]\n",
            "defines no app role \"Nope\"",
        ),
        (
            "[[tenants]]\nid = \"6f1c3f2e-4c55-4a8b-9d2e-0b7c1a2d3e4f\"\nfaults = { error_rate = 2.0 }\n",
            "error_rate must be between 0 and 1",
        ),
    ] {
        std::fs::write(&path, content).unwrap();
        let output = Command::new(BINARY)
            .args([
                "--permissions-file",
                PERMISSIONS,
                "--listen",
                "127.0.0.1:0",
                "--scenario",
                path.to_str().unwrap(),
            ])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{stderr}");
        assert!(
            stderr.contains(expected) && !stderr.contains("panicked"),
            "{stderr}"
        );
    }
}
