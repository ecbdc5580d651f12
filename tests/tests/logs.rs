//! The log lines an operator meets before any work (issue 10):
//! - none at `info` from OpenTelemetry's start-up (every command used to print "Global tracer
//!   provider is set" and "Global meter provider is set"), with or without an exporter,
//!   whatever the command. The processes run with `RUST_LOG=info`, so the lines would show
//!   if they were emitted to the subscriber, rather than only filtered out by the default;
//! - without `--log-format`: JSON lines when stderr is not a terminal, text on one.

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

/// The line `init` logs (at debug) about itself, from `probe` of an unknown partner, with
/// stderr as `tty` says: a pipe, or a terminal (`script` runs the command on a pseudo-terminal).
fn init_line(tty: bool) -> String {
    let binary = workspace_binary("ferry-worker").expect("binary");
    let command = format!(
        "{} --config {} probe --partner nope",
        binary.display(),
        examples().display()
    );
    let mut cmd = if tty {
        let mut cmd = Command::new("script");
        cmd.args(["-qec", &command, "/dev/null"]);
        cmd
    } else {
        let mut cmd = Command::new(&binary);
        cmd.arg("--config")
            .arg(examples())
            .args(["probe", "--partner", "nope"]);
        cmd
    };
    let out = cmd
        .env_remove("FERRY_LOG_FORMAT")
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .env("RUST_LOG", "ferry_shared::telemetry=debug")
        .output()
        .expect("running the binary");
    // `script` puts the terminal's output on its stdout.
    let text = String::from_utf8_lossy(if tty { &out.stdout } else { &out.stderr }).into_owned();
    text.lines()
        .find(|line| line.contains("telemetry initialised"))
        .unwrap_or_else(|| panic!("no init line (tty: {tty}) in:\n{text}"))
        .to_owned()
}

#[test]
fn logs_are_json_off_a_terminal_and_text_on_one() {
    let piped = init_line(false);
    let json: serde_json::Value =
        serde_json::from_str(&piped).unwrap_or_else(|_| panic!("not JSON: {piped}"));
    assert_eq!(json["level"], "DEBUG", "{piped}");
    let on_terminal = init_line(true);
    assert!(
        serde_json::from_str::<serde_json::Value>(on_terminal.trim()).is_err(),
        "JSON on a terminal: {on_terminal}"
    );
    assert!(on_terminal.contains("DEBUG"), "{on_terminal}");
}
