//! The two binaries as an operator meets them: `validate` prints the summary of a good
//! configuration and every error of a bad one (file, line, field; exit 2); `run` tells a
//! configuration error (exit 2) from a run that cannot proceed (exit 1); `probe` shows
//! every step against each real FTPS server, and the failing step when one fails.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use ferry_tests::ftp::{FtpServer, FtpServerKind, FtpServerOptions};
use ferry_tests::ports::free_port;
use ferry_tests::tools::workspace_binary;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Runs a workspace binary with `args`, with the environment fallbacks of `ferry.yaml`
/// cleared so the machine's variables cannot change the outcome.
fn ferry(binary: &str, args: &[&str]) -> Output {
    let path = workspace_binary(binary).expect("binary");
    Command::new(path)
        .args(args)
        .env_remove("FERRY_CONFIG")
        .env_remove("FERRY_BROKER_URL")
        .env_remove("FERRY_REDIS_URL")
        .env_remove("VAULT_ADDR")
        .env("RUST_LOG", "warn")
        .output()
        .expect("running the binary")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Every configuration the repository ships (README, compose stack, hardened example) is one
/// both binaries accept: an example that rots is the first thing a newcomer meets.
#[test]
fn every_shipped_example_validates_with_both_binaries() {
    let examples = repo().join("examples");
    let mut checked = Vec::new();
    for entry in std::fs::read_dir(&examples).expect("examples/") {
        let dir = entry.expect("entry").path();
        if !dir.is_dir() {
            continue;
        }
        for binary in ["ferry-worker", "ferry-scheduler"] {
            let out = ferry(binary, &["validate", "--config", dir.to_str().unwrap()]);
            assert!(
                out.status.success(),
                "{binary} validate {}: {}\n{}",
                dir.display(),
                text(&out.stderr),
                text(&out.stdout)
            );
        }
        checked.push(dir.file_name().unwrap().to_string_lossy().into_owned());
    }
    checked.sort();
    assert_eq!(
        checked,
        ["basic", "compose", "hardened"],
        "the examples checked"
    );
}

#[test]
fn validate_prints_the_summary_of_the_examples() {
    for binary in ["ferry-worker", "ferry-scheduler"] {
        let config = repo().join("examples/basic");
        let out = ferry(binary, &["validate", "--config", config.to_str().unwrap()]);
        let stdout = text(&out.stdout);
        assert!(
            out.status.success(),
            "{binary}: {}\n{stdout}",
            text(&out.stderr)
        );
        assert!(stdout.contains("partners (2)"), "{stdout}");
        assert!(stdout.contains("insurance-claims-upload"), "{stdout}");
        assert!(
            stdout.contains("next 20"),
            "next fire time shown:\n{stdout}"
        );
        assert!(
            !stdout.contains("guest:guest"),
            "no password in the summary:\n{stdout}"
        );
    }
}

#[test]
fn validate_lists_every_error_with_file_line_and_field() {
    let config = repo().join("tests/fixtures/config/many-errors");
    for binary in ["ferry-worker", "ferry-scheduler"] {
        let out = ferry(binary, &["validate", "--config", config.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(2), "{binary} exits 2");
        let stderr = text(&out.stderr);
        for expected in [
            "partners/everything-wrong.yaml:8:5: ftps.connection.passive: passive mode is required",
            "partners/everything-wrong.yaml:15:5: ftps.tls.mode: implicit TLS is not supported",
            "partners/everything-wrong.yaml:12:5: ftps.auth.user: unknown field `user`; did you mean `username`?",
            "flows/everything-wrong.yaml:9:5: flows.everything-wrong.schedule_cron:",
            "flows/everything-wrong.yaml:5:7: flows.everything-wrong.target.partner: no partner has the id `nobody`",
            "ferry.yaml:4:3: worker.concurrency:",
        ] {
            assert!(
                stderr.contains(expected),
                "{binary}: missing `{expected}` in:\n{stderr}"
            );
        }
        let count = stderr
            .lines()
            .filter(|line| line.contains(".yaml:"))
            .count();
        assert!(
            stderr.contains(&format!("{count} configuration error(s)")),
            "{stderr}"
        );
        assert!(
            count >= 20,
            "every error is listed, not the first one: {count}"
        );
    }
}

#[test]
fn run_exits_2_on_a_configuration_error_and_1_when_redis_is_down() {
    let bad = repo().join("tests/fixtures/config/many-errors");
    let out = ferry(
        "ferry-worker",
        &["run", "--config", bad.to_str().unwrap(), "--flow", "x"],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));

    // A valid configuration whose Redis is a port where nothing listens: fail closed.
    let dir = tempfile::tempdir().expect("tempdir");
    let examples = repo().join("examples/basic");
    for sub in ["partners", "flows"] {
        std::fs::create_dir(dir.path().join(sub)).expect("mkdir");
        for entry in std::fs::read_dir(examples.join(sub)).expect("read examples") {
            let entry = entry.expect("entry");
            std::fs::copy(entry.path(), dir.path().join(sub).join(entry.file_name()))
                .expect("copy");
        }
    }
    std::fs::write(
        dir.path().join("ferry.yaml"),
        format!("redis:\n  url: redis://127.0.0.1:{}\n", free_port()),
    )
    .expect("ferry.yaml");
    let config = dir.path().to_str().unwrap();
    let out = ferry(
        "ferry-worker",
        &[
            "run",
            "--config",
            config,
            "--flow",
            "insurance-claims-upload",
            "--json",
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    assert_eq!(report["error"]["kind"], "store-unavailable", "{report}");
}

/// A configuration directory with one partner, `p`, for `server` (password as given).
fn partner_config(server: &FtpServer, password: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join("partners")).expect("partners/");
    std::fs::write(dir.path().join("ca.pem"), &server.pki.ca_cert_pem).expect("ca.pem");
    let partner = format!(
        "id: p\nprotocol: ftps\nftps:\n  connection:\n    host: {}\n    port: {}\n    passive: true\n  \
         auth:\n    username: {}\n    password: \"literal:{password}\"\n  tls:\n    ca_cert: file:{}\n",
        server.host,
        server.port,
        server.username,
        dir.path().join("ca.pem").display()
    );
    std::fs::write(dir.path().join("partners/p.yaml"), partner).expect("partner");
    dir
}

#[tokio::test]
async fn probe_shows_every_step_against_each_server() {
    for kind in FtpServerKind::ALL {
        let server = FtpServer::start(FtpServerOptions::new(kind))
            .await
            .expect("server");
        server
            .write_file("hello.txt", b"hello")
            .expect("a file to list");
        let dir = partner_config(&server, &server.password);
        let config = dir.path().to_str().unwrap();
        let out = ferry(
            "ferry-worker",
            &["probe", "--config", config, "--partner", "p", "--path", "/"],
        );
        let stdout = text(&out.stdout);
        assert!(
            out.status.success(),
            "{kind:?}: {}\n{stdout}",
            text(&out.stderr)
        );
        for step in [
            "tcp",
            "auth-tls",
            "certificate",
            "login",
            "pbsz-prot",
            "feat",
            "passive",
            "list",
        ] {
            assert!(
                stdout
                    .lines()
                    .any(|line| line.starts_with("ok") && line.contains(step)),
                "{kind:?}: step `{step}` missing:\n{stdout}"
            );
        }
        assert!(
            stdout
                .replace(':', "")
                .contains(&server.pki.server_fingerprint_sha256),
            "{kind:?}: the certificate's SHA-256 fingerprint is shown:\n{stdout}"
        );
        assert!(
            stdout.contains("TLSv1."),
            "{kind:?}: TLS version shown:\n{stdout}"
        );
        assert!(
            !stdout.contains(&server.password),
            "{kind:?}: password printed:\n{stdout}"
        );
    }
}

#[tokio::test]
async fn probe_names_the_failing_step_and_never_prints_the_password() {
    let server = FtpServer::start(FtpServerOptions::new(FtpServerKind::Vsftpd))
        .await
        .expect("server");
    let wrong = "Wr0ng-Passw0rd-For-Probe";
    let dir = partner_config(&server, wrong);
    let config = dir.path().to_str().unwrap();
    let out = ferry(
        "ferry-worker",
        &["probe", "--config", config, "--partner", "p"],
    );
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    let failed = stdout
        .lines()
        .find(|line| line.starts_with("FAILED"))
        .expect("a FAILED line");
    assert!(
        failed.contains("login") && failed.contains("authentication_failed"),
        "{failed}"
    );
    assert!(failed.contains("a retry will not help"), "{failed}");
    assert!(
        !stdout.contains(wrong) && !text(&out.stderr).contains(wrong),
        "password printed"
    );
}
