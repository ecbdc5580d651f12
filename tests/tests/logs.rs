//! The log lines an operator meets before any work: none at `info` from OpenTelemetry's
//! start-up (issue 10: every command used to print "Global tracer provider is set" and
//! "Global meter provider is set"), with or without an exporter, whatever the command.
//!
//! The processes run with `RUST_LOG=info`, so the lines would show if they were emitted to
//! the subscriber, rather than only being filtered out by the default filter.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use ferry_tests::tools::workspace_binary;

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/basic")
}

/// Runs a workspace binary with `args` at `RUST_LOG=info`, plus `env`.
fn ferry(binary: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(workspace_binary(binary).expect("binary"))
        .arg("--config")
        .arg(examples())
        .args(args)
        .env_remove("FERRY_CONFIG")
        .env_remove("FERRY_BROKER_URL")
        .env_remove("FERRY_REDIS_URL")
        .env_remove("FERRY_LOG_FORMAT")
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .env_remove("VAULT_ADDR")
        .env("RUST_LOG", "info")
        .envs(env.iter().copied())
        .output()
        .expect("running the binary")
}

/// Fails when `out`'s output has an OpenTelemetry provider announcement.
fn assert_quiet(what: &str, out: &Output) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    for text in [&stderr, &stdout] {
        assert!(
            !text.contains("provider is set") && !text.contains("GlobalSet"),
            "{what}: start-up noise:\n{text}"
        );
    }
}

#[test]
fn commands_start_without_opentelemetry_announcements() {
    // `probe` and `trigger` of unknown names: telemetry is installed, then the command fails.
    let with_exporter = [("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9")];
    for env in [&[][..], &with_exporter[..]] {
        let out = ferry("ferry-worker", &["validate"], env);
        assert_eq!(out.status.code(), Some(0), "validate");
        assert_quiet("ferry-worker validate", &out);
        let out = ferry("ferry-worker", &["probe", "--partner", "nope"], env);
        assert_eq!(out.status.code(), Some(2), "probe of an unknown partner");
        assert!(String::from_utf8_lossy(&out.stderr).contains("no partner `nope`"));
        assert_quiet("ferry-worker probe", &out);
        let out = ferry("ferry-scheduler", &["trigger", "--flow", "nope"], env);
        assert!(!out.status.success(), "trigger of an unknown flow");
        assert_quiet("ferry-scheduler trigger", &out);
    }
}
