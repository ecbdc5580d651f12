//! `infra/prometheus/alerts.yml`, checked by Prometheus's own tool: `promtool check rules`
//! accepts it, and `promtool test rules alerts.test.yml` proves that each alert fires on the
//! series that should raise it and stays silent on healthy ones (the unit tests are in that
//! file). A real Prometheus loading the rules against a worker is in `metrics_fleet.rs`.

use std::path::PathBuf;
use std::process::Command;

use ferry_tests::tools::find_tool;

fn rules_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../infra/prometheus")
}

/// Runs `promtool ARGS` in the rules' directory; its output, or a panic with it.
fn promtool(args: &[&str]) -> String {
    let promtool = find_tool("promtool", &[]).expect("promtool");
    let output = Command::new(promtool)
        .args(args)
        .current_dir(rules_dir())
        .output()
        .expect("promtool runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "promtool {args:?}: {text}");
    text
}

#[test]
fn the_alert_rules_pass_promtool_check_rules() {
    let text = promtool(&["check", "rules", "alerts.yml"]);
    assert!(text.contains("SUCCESS: 6 rules found"), "{text}");
}

#[test]
fn each_alert_fires_on_its_series_and_not_without_them() {
    let text = promtool(&["test", "rules", "alerts.test.yml"]);
    assert!(text.contains("SUCCESS"), "{text}");
    // Every alert of the file has a unit test.
    let tests = std::fs::read_to_string(rules_dir().join("alerts.test.yml")).expect("tests");
    let rules = std::fs::read_to_string(rules_dir().join("alerts.yml")).expect("rules");
    for line in rules.lines() {
        if let Some(name) = line.trim().strip_prefix("- alert: ") {
            assert!(
                tests.contains(&format!("alertname: {name}")),
                "{name} has no unit test"
            );
        }
    }
}
