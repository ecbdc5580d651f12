//! README's first command, exactly as written, does ferry's main job: the test takes the
//! first `sh` block of README's Quick start, runs it in a fresh `git clone` of this
//! repository (so it proves what a newcomer gets from the committed tree, not from this
//! working copy), and checks what a user would: every sample file delivered (also looked
//! up on disk), the second run's files all skipped as duplicates, exit 0, and nothing of
//! the demo left listening.
//!
//! The command builds before it runs. `CARGO_TARGET_DIR` points at this workspace's target
//! folder, so the clone reuses the compiled dependencies and only rebuilds ferry's own
//! crates (its sources sit at another path); a cold build is measured separately (see the
//! README). That build replaces `target/debug/ferry-worker` with the clone's (the committed
//! sources), so `tests/nextest.toml` runs this test alone. The test needs `git` and `cargo`
//! on `PATH`, as a newcomer does.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The workspace's target folder: the test executable is `<target>/<profile>/deps/demo-*`.
fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable");
    exe.ancestors()
        .nth(3)
        .expect("target folder above the test executable")
        .to_path_buf()
}

/// The first ```sh block under README's "## Quick start", one command per line.
fn readme_first_command(readme: &str) -> String {
    let quick_start = readme
        .split("\n## Quick start")
        .nth(1)
        .expect("README has a Quick start section");
    let block = quick_start
        .split("```sh\n")
        .nth(1)
        .expect("Quick start has an sh block")
        .split("\n```")
        .next()
        .expect("the sh block is closed");
    block.trim().to_owned()
}

/// A `key: value` line's value from the demo's output (`partner: FTPS server on ADDR ...`).
fn after<'a>(stdout: &'a str, prefix: &str) -> &'a str {
    stdout
        .lines()
        .find_map(|line| line.strip_prefix(prefix))
        .unwrap_or_else(|| panic!("no line starting with {prefix:?} in:\n{stdout}"))
}

#[test]
fn readme_first_command_runs_the_demo_in_a_fresh_clone() {
    let readme = std::fs::read_to_string(repo().join("README.md")).expect("README.md");
    let command = readme_first_command(&readme);
    assert_eq!(
        command, "cargo run -p ferry-worker -- demo",
        "README's first command changed: update this test's expectations with it"
    );

    let scratch = tempfile::tempdir().expect("temp dir");
    let clone = scratch.path().join("ferry");
    let status = Command::new("git")
        .args(["clone", "--quiet"])
        .arg(repo())
        .arg(&clone)
        .status()
        .expect("running git clone");
    assert!(status.success(), "git clone failed");

    let output = Command::new("sh")
        .args(["-c", &command])
        .current_dir(&clone)
        .env("CARGO_TARGET_DIR", target_dir())
        .env_remove("FERRY_CONFIG")
        .env_remove("FERRY_REDIS_URL")
        .env_remove("FERRY_BROKER_URL")
        .env_remove("RUST_LOG")
        .output()
        .expect("running README's first command");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let context = format!(
        "stdout:\n{stdout}\nstderr (last 4000 bytes):\n{}",
        tail(&stderr)
    );

    assert!(
        output.status.success(),
        "exit {:?}\n{context}",
        output.status
    );
    let verdict = stdout.lines().last().unwrap_or_default();
    assert_eq!(
        verdict, "demo: ok: 6/6 files delivered, 6/6 duplicates skipped on the second run",
        "{context}"
    );

    // The files are where the demo says, on the partner's disk and in the local inbox.
    let everything = PathBuf::from(after(&stdout, "ferry demo: everything goes under "));
    for (dir, expected) in [("partner/incoming", 3), ("local/inbox", 3)] {
        let names: Vec<_> = std::fs::read_dir(everything.join(dir))
            .unwrap_or_else(|e| panic!("{dir}: {e}\n{context}"))
            .filter_map(Result::ok)
            .map(|entry| entry.file_name().to_string_lossy().into_owned())
            .filter(|name| name.ends_with(".csv"))
            .collect();
        assert_eq!(names.len(), expected, "{dir} holds {names:?}\n{context}");
    }
    // The second run: every row a duplicate, in both flows' summaries.
    let second_run = stdout
        .split("second run:")
        .nth(1)
        .expect("a second run section");
    assert_eq!(
        second_run
            .matches("0 transferred, 3 duplicates skipped")
            .count(),
        2,
        "{context}"
    );

    // Nothing left listening: the partner's control port refuses connections.
    let partner = after(&stdout, "partner: FTPS server on ")
        .split_whitespace()
        .next()
        .expect("the partner's address");
    assert!(
        TcpStream::connect_timeout(&partner.parse().expect("address"), Duration::from_secs(1))
            .is_err(),
        "{partner} still accepts connections after the demo"
    );
    std::fs::remove_dir_all(&everything).ok();
}

fn tail(text: &str) -> &str {
    let start = text.len().saturating_sub(4000);
    let start = (start..text.len())
        .find(|&i| text.is_char_boundary(i))
        .unwrap_or(text.len());
    &text[start..]
}
