//! The deployment files, checked as far as this machine can check them.
//!
//! No Docker engine, registry or Kubernetes cluster runs here, so nothing is deployed. What
//! is checked instead, with the validators `scripts/setup.d/validators.sh` installs:
//!
//! - `docker-compose.yml` against the Compose Specification schema (`check-jsonschema
//!   --builtin-schema vendor.compose-spec`);
//! - the Kubernetes manifests with `kubernetes-validate --strict` (the API schemas of the
//!   Kubernetes version it ships, 1.37; unknown fields are errors);
//! - KEDA's `TriggerAuthentication` and `ScaledObject`, which kubernetes-validate has no
//!   schema for, against KEDA's CRD schemas kept in `infra/kubernetes/schemas/` (strict:
//!   unknown fields are errors);
//! - the scale-to-zero settings: `minReplicaCount: 0` with an activation threshold, over the
//!   management API so that runs in flight (unacked) keep a worker;
//! - the Prometheus configuration of the compose stack with `promtool check config`.
//!
//! Each validator is also shown a broken copy, so a validator that passes everything cannot
//! make these tests pass.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use ferry_tests::tools::find_tool;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Runs a validator from the test bed's venv.
fn validator(name: &str, args: &[&str]) -> Output {
    let tool = find_tool(name, &["venv/bin"]).expect("validator installed");
    Command::new(tool)
        .args(args)
        .output()
        .expect("validator runs")
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// A scratch file with `contents`, named like `name` (validators look at the extension).
fn scratch(dir: &tempfile::TempDir, name: &str, contents: &str) -> String {
    let path = dir.path().join(name);
    std::fs::write(&path, contents).expect("scratch file");
    path.to_string_lossy().into_owned()
}

/// The documents of a multi-document YAML file (split on `---` lines).
fn documents(yaml: &str) -> Vec<String> {
    yaml.split("\n---\n")
        .map(str::to_owned)
        .filter(|doc| doc.lines().any(|l| l.starts_with("kind:")))
        .collect()
}

fn kind_of(doc: &str) -> &str {
    doc.lines()
        .find_map(|l| l.strip_prefix("kind:"))
        .map(str::trim)
        .unwrap_or_default()
}

#[test]
fn the_compose_file_follows_the_compose_specification() {
    let compose = repo().join("docker-compose.yml");
    let compose = compose.to_str().unwrap();
    let out = validator(
        "check-jsonschema",
        &["--builtin-schema", "vendor.compose-spec", compose],
    );
    assert!(out.status.success(), "{}", text(&out));

    let dir = tempfile::tempdir().unwrap();
    let broken = std::fs::read_to_string(compose).unwrap().replace(
        "    command: [\"ferry-scheduler\"]",
        "    commmand: [\"ferry-scheduler\"]",
    );
    let broken = scratch(&dir, "docker-compose.yml", &broken);
    let out = validator(
        "check-jsonschema",
        &["--builtin-schema", "vendor.compose-spec", &broken],
    );
    assert!(!out.status.success(), "a misspelled key is refused");
}

#[test]
fn the_kubernetes_manifests_pass_strict_validation() {
    let dir = repo().join("infra/kubernetes");
    for file in ["config.yaml", "worker.yaml", "scheduler.yaml"] {
        let path = dir.join(file);
        let out = validator(
            "kubernetes-validate",
            &["--strict", "--no-warn", path.to_str().unwrap()],
        );
        let said = text(&out);
        assert!(out.status.success(), "{file}: {said}");
        assert!(
            said.contains("passed for resource"),
            "{file} validated: {said}"
        );
    }

    let tmp = tempfile::tempdir().unwrap();
    let broken = std::fs::read_to_string(dir.join("worker.yaml"))
        .unwrap()
        .replacen("terminationGracePeriodSeconds", "terminationGracePeriod", 1);
    let broken = scratch(&tmp, "worker.yaml", &broken);
    let out = validator("kubernetes-validate", &["--strict", "--no-warn", &broken]);
    assert!(!out.status.success(), "an unknown field is refused");
}

#[test]
fn the_keda_objects_match_kedas_crd_schemas_and_scale_to_zero_safely() {
    let manifest = std::fs::read_to_string(repo().join("infra/kubernetes/keda.yaml")).unwrap();
    let schemas = repo().join("infra/kubernetes/schemas");
    let tmp = tempfile::tempdir().unwrap();
    let docs = documents(&manifest);
    let kinds: Vec<&str> = docs.iter().map(|doc| kind_of(doc)).collect();
    assert_eq!(kinds, ["TriggerAuthentication", "ScaledObject"]);
    for doc in &docs {
        let kind = kind_of(doc);
        let schema = schemas.join(format!("keda-{}-v1alpha1.json", kind.to_lowercase()));
        let schema = schema.to_str().unwrap();
        let file = scratch(&tmp, &format!("{kind}.yaml"), doc);
        let out = validator("check-jsonschema", &["--schemafile", schema, &file]);
        assert!(out.status.success(), "{kind}: {}", text(&out));

        // The schema bites: a misspelled field of the spec is refused.
        let broken = doc.replacen("spec:\n", "spec:\n  minReplicas: 0\n", 1);
        let broken = scratch(&tmp, &format!("broken-{kind}.yaml"), &broken);
        let out = validator("check-jsonschema", &["--schemafile", schema, &broken]);
        assert!(!out.status.success(), "{kind}: an unknown field is refused");
    }

    let scaled = &docs[1];
    assert!(scaled.contains("minReplicaCount: 0"), "scales to zero");
    assert!(
        scaled.contains("activationValue: \"0\""),
        "one waiting message wakes a worker"
    );
    assert!(
        scaled.contains("protocol: http") && !scaled.contains("excludeUnacknowledged: true"),
        "the count includes unacked runs in flight, so a busy fleet is not scaled to zero"
    );
}

/// The operations port (probes, metrics; soon triggers) listens on loopback unless a
/// deployment asks for more: the manifests and the compose example set it explicitly.
#[test]
fn the_operations_ports_listen_on_loopback_by_default() {
    let defaults = ferry_shared::config::Settings::default();
    assert!(defaults.worker.health_listen.ip().is_loopback());
    assert!(defaults.scheduler.metrics_listen.ip().is_loopback());
}

/// The compose stack's Prometheus configuration loads, with the alert rules it names.
#[test]
fn the_compose_prometheus_configuration_loads_with_the_alert_rules() {
    let promtool = find_tool("promtool", &[]).expect("promtool");
    let config = repo().join("infra/prometheus/prometheus-compose.yml");
    let out = Command::new(&promtool)
        .args(["check", "config"])
        .arg(&config)
        .output()
        .expect("promtool runs");
    let said = text(&out);
    assert!(out.status.success(), "{said}");
    assert!(
        said.contains("alerts.yml") && said.contains("SUCCESS"),
        "{said}"
    );

    // promtool bites: a rule file that is not there fails the check.
    let tmp = tempfile::tempdir().unwrap();
    let broken = std::fs::read_to_string(&config)
        .unwrap()
        .replace("alerts.yml", "no-such-rules.yml");
    let broken = scratch(&tmp, "prometheus.yml", &broken);
    let out = Command::new(&promtool)
        .args(["check", "config", &broken])
        .output()
        .expect("promtool runs");
    assert!(!out.status.success(), "a missing rule file is refused");
}
