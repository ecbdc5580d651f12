//! `ferry-worker demo --fleet` (what `scripts/demo --fleet` runs once it has built the
//! binaries): the demo's job done by a real fleet on this machine's RabbitMQ and Redis,
//! with OpenBao holding the partner's password, `ferry-scheduler` serving the HTTP trigger
//! and two workers. The test checks what a user would: the verdict line and exit 0, the
//! files on both sides, the delivery records in Redis under the run's prefix, the
//! password read from OpenBao, no token in any process's log, and nothing the demo
//! started left listening.

use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use ferry_tests::fleet::{delete_redis_keys, redis_url};
use ferry_tests::tools::{testbed_home, workspace_binary};

/// The value after `prefix` on the line that starts with it.
fn after<'a>(stdout: &'a str, prefix: &str) -> &'a str {
    stdout
        .lines()
        .find_map(|line| line.strip_prefix(prefix))
        .unwrap_or_else(|| panic!("no line starting with {prefix:?} in:\n{stdout}"))
}

/// Every `127.0.0.1:PORT` address in `text`.
fn addresses(text: &str) -> Vec<SocketAddr> {
    text.split(|c: char| c.is_whitespace() || "(),;/".contains(c))
        .filter_map(|word| word.parse().ok())
        .collect()
}

/// The number of the `worker-N: runs ...; secrets read from OpenBao: K` lines' `K`s.
fn secrets_read_from_openbao(stdout: &str) -> u64 {
    stdout
        .lines()
        .filter(|line| line.trim_start().starts_with("worker-"))
        .filter_map(|line| line.rsplit(": ").next()?.trim().parse::<u64>().ok())
        .sum()
}

#[test]
fn the_fleet_demo_moves_the_files_with_a_scheduler_two_workers_and_openbao() {
    let worker = workspace_binary("ferry-worker").expect("ferry-worker built");
    workspace_binary("ferry-scheduler").expect("ferry-scheduler built");
    let path = format!(
        "{}:{}",
        testbed_home().join("venv/bin").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let output = Command::new(&worker)
        .args(["demo", "--fleet"])
        .env("PATH", path)
        .env_remove("RUST_LOG")
        .output()
        .expect("running the fleet demo");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let context = format!(
        "stdout:\n{stdout}\nstderr:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let everything = PathBuf::from(after(&stdout, "ferry fleet demo: everything goes under "));
    let prefix = after(&stdout, "configuration: ")
        .split('`')
        .nth(1)
        .expect("the Redis prefix in backquotes")
        .trim_end_matches(':')
        .to_owned();
    let records = |flow: &str, kind: &str| {
        let keys = Command::new("redis-cli")
            .args(["-u", &redis_url(), "--scan", "--pattern"])
            .arg(format!("{prefix}:{{flow:{flow}}}:delivered:{kind}:*"))
            .output()
            .expect("redis-cli");
        String::from_utf8_lossy(&keys.stdout).lines().count()
    };
    let uploads_recorded = records("demo-upload", "file");
    let downloads_recorded = records("demo-download", "download");
    delete_redis_keys(&format!("{prefix}:"));

    assert!(
        output.status.success(),
        "exit {:?}\n{context}",
        output.status
    );
    assert_eq!(
        stdout.lines().last().unwrap_or_default(),
        "demo: ok: 6/6 files delivered, 6/6 duplicates skipped on the second run",
        "{context}"
    );
    // The files, on the partner's disk and in the local inbox.
    for dir in ["partner/incoming", "local/inbox"] {
        let csv = std::fs::read_dir(everything.join(dir))
            .unwrap_or_else(|e| panic!("{dir}: {e}\n{context}"))
            .filter_map(Result::ok)
            .filter(|entry| entry.file_name().to_string_lossy().ends_with(".csv"))
            .count();
        assert_eq!(csv, 3, "{dir}\n{context}");
    }
    // One delivery record per file, in this run's Redis keys.
    assert_eq!((uploads_recorded, downloads_recorded), (3, 3), "{context}");
    // The workers logged in with the password they read from OpenBao.
    assert!(secrets_read_from_openbao(&stdout) >= 1, "{context}");
    // Neither the Vault token nor the trigger's token is in a ferry process's log (OpenBao's
    // own dev-mode log prints its root token: it is not ferry's).
    for token_file in ["vault-token", "trigger-token"] {
        let token = std::fs::read_to_string(everything.join("secrets").join(token_file))
            .expect("token file");
        for process in ["scheduler", "worker-1", "worker-2"] {
            let log = everything.join("logs").join(format!("{process}.log"));
            let text = std::fs::read_to_string(&log).expect("the process's log");
            assert!(!text.is_empty(), "{} is empty", log.display());
            assert!(
                !text.contains(token.trim()),
                "{token_file} in {}",
                log.display()
            );
        }
    }
    // Nothing the demo started is still listening: partner, OpenBao, trigger, workers.
    let listening: Vec<SocketAddr> = ["partner: ", "secrets: ", "fleet: ferry-scheduler"]
        .iter()
        .flat_map(|prefix| addresses(after(&stdout, prefix)))
        .collect();
    assert!(listening.len() >= 5, "{listening:?}\n{context}");
    for addr in listening {
        assert!(
            TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_err(),
            "{addr} still accepts connections after the demo"
        );
    }
    std::fs::remove_dir_all(&everything).ok();
}
