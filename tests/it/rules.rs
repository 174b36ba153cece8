//! The shipped Prometheus alert rules pass `promtool check rules` and their unit tests.

use std::process::Command;

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/config/prometheus");

#[test]
fn alert_rules_are_valid_and_their_tests_pass() {
    for args in [
        ["check", "rules", "kodo-access.rules.yml"],
        ["test", "rules", "kodo-access.rules.test.yml"],
    ] {
        let output = Command::new("promtool")
            .args(args)
            .current_dir(DIR)
            .output()
            .expect("promtool is installed (scripts/ensure-deps)");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(
            output.status.success() && text.contains("SUCCESS"),
            "promtool {args:?}:\n{text}"
        );
    }
}
