//! The embedded store (`store: { kind: embedded, path: ... }`) through the binaries:
//! `ferry-worker run` delivers with it and skips the duplicates on the next run, the fleet's
//! processes refuse it, and a run killed with `SIGKILL` mid-transfer is finished by the next
//! run: every file at the partner exactly once, and recorded. The audit trail kept in the
//! file verifies with `ferry-worker audit verify`, trimmed by its retention too.

use ferry_shared::crash_point::CrashPoint;
use ferry_tests::audit_trail::audit_command;
use ferry_tests::bed::{Bed, all_names, upload, write_files};
use ferry_tests::ftp::FtpServerKind;
use ferry_tests::tools::workspace_binary;

/// The `outcome` of each row of a report, sorted.
fn outcomes(report: &serde_json::Value) -> Vec<String> {
    let mut outcomes: Vec<String> = report["files"]
        .as_array()
        .expect("rows")
        .iter()
        .map(|row| row["outcome"].as_str().unwrap_or_default().to_owned())
        .collect();
    outcomes.sort();
    outcomes
}

#[tokio::test]
async fn worker_run_on_the_embedded_store_delivers_then_skips_the_duplicates() {
    let mut bed = Bed::start("embedded-run", FtpServerKind::Vsftpd).await;
    bed.use_embedded_store();
    bed.config(&upload(""), None);
    let expected = write_files(&bed.local(), 3, 10 * 1024);

    let first = bed.worker_run_ok().await;
    assert_eq!(outcomes(&first), ["transferred"; 3], "{first}");
    assert_eq!(bed.remote_files("in"), expected);
    let state = bed.embedded.as_ref().expect("embedded");
    assert!(state.is_file(), "the store's file is {}", state.display());
    assert_eq!(
        bed.recorded_names(),
        expected.keys().cloned().collect(),
        "one record per file, in the file"
    );
    assert!(bed.flow_keys("claim").is_empty(), "no claim left");

    let second = bed.worker_run_ok().await;
    assert_eq!(outcomes(&second), ["duplicate"; 3], "{second}");
    assert_eq!(bed.remote_files("in"), expected, "nothing sent twice");
}

#[tokio::test]
async fn the_fleets_processes_refuse_the_embedded_store() {
    let mut bed = Bed::start("embedded-fleet", FtpServerKind::Vsftpd).await;
    bed.use_embedded_store();
    bed.config(&upload(""), None);
    for (binary, args) in [
        ("ferry-worker", &["consume"][..]),
        ("ferry-scheduler", &[][..]),
    ] {
        let output = tokio::process::Command::new(workspace_binary(binary).expect("binary"))
            .arg("--config")
            .arg(bed.dir.path())
            .args(args)
            .output()
            .await
            .expect("start");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{binary}: {stderr}");
        assert!(
            stderr.contains("store.kind: embedded") && stderr.contains("state.db"),
            "{binary} says why: {stderr}"
        );
    }
    assert!(
        !bed.embedded.as_ref().expect("path").exists(),
        "a refused process creates no store file"
    );
    // `validate` works with it, and names the file it would use.
    let output = tokio::process::Command::new(workspace_binary("ferry-worker").expect("binary"))
        .arg("--config")
        .arg(bed.dir.path())
        .arg("validate")
        .output()
        .await
        .expect("validate");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{stdout}");
    let state = bed.embedded.as_ref().expect("path").display().to_string();
    assert!(
        stdout.contains(&format!("store: embedded, {state}")),
        "{stdout}"
    );
}

/// `kill -9` of `ferry-worker run` on the embedded store at `point` (the second file to get
/// there), then a new run: every file at the partner exactly once with its bytes, each
/// recorded, no claim or intent left, and a third run finds only duplicates.
async fn killed_and_run_again(point: CrashPoint) {
    let mut bed = Bed::start(
        &format!("embedded-kill-{}", point.as_str()),
        FtpServerKind::Vsftpd,
    )
    .await;
    bed.use_embedded_store();
    bed.config(&upload(""), None);
    let expected = write_files(&bed.local(), 4, 300 * 1024);

    bed.crash_run_at(point, 2).await;

    let rerun = bed.worker_run_ok().await;
    assert!(
        outcomes(&rerun)
            .iter()
            .all(|o| o == "transferred" || o == "duplicate"),
        "{rerun}"
    );
    assert_eq!(bed.remote_files("in"), expected, "every file once, whole");
    assert_eq!(
        all_names(&bed.server.path("in")),
        expected.keys().cloned().collect::<Vec<_>>(),
        "no temporary file left, no second copy"
    );
    assert_eq!(bed.recorded_names(), expected.keys().cloned().collect());
    assert!(bed.flow_keys("claim").is_empty(), "no claim left");
    assert!(bed.flow_keys("intent").is_empty(), "no intent left");

    let third = bed.worker_run_ok().await;
    assert_eq!(outcomes(&third), ["duplicate"; 4], "{third}");
}

#[tokio::test]
async fn killed_mid_transfer_on_the_embedded_store_the_next_run_delivers_each_file_once() {
    killed_and_run_again(CrashPoint::MidStream).await;
}

#[tokio::test]
async fn killed_between_intent_and_rename_on_the_embedded_store_the_next_run_finishes_it() {
    killed_and_run_again(CrashPoint::IntentWritten).await;
}

#[tokio::test]
async fn the_audit_trail_in_the_embedded_store_verifies_and_is_trimmed_by_its_retention() {
    let mut bed = Bed::start("embedded-audit", FtpServerKind::Vsftpd).await;
    bed.use_embedded_store();
    let retention = "audit:\n  retention:\n    max_records: 4\n";
    let password = format!("literal:{}", bed.server.password);
    bed.config_with(&upload(""), None, retention, &password);
    write_files(&bed.local(), 3, 1024);
    bed.worker_run_ok().await;
    bed.worker_run_ok().await;

    // 6 records written (3 transferred, 3 duplicates), the first 2 trimmed.
    let verify = audit_command(bed.dir.path(), &["verify", "--flow", "f"], &[])
        .await
        .expect("audit verify");
    assert_eq!(verify.code, Some(0), "{}{}", verify.stdout, verify.stderr);
    assert!(
        verify
            .stdout
            .contains("intact, 4 records verified (#3 to #6)"),
        "{}",
        verify.stdout
    );
    let history = audit_command(bed.dir.path(), &["--flow", "f", "--json"], &[])
        .await
        .expect("audit");
    let rows: Vec<serde_json::Value> = serde_json::from_str(&history.stdout).expect("JSON");
    let outcomes: Vec<&str> = rows.iter().filter_map(|r| r["outcome"].as_str()).collect();
    assert_eq!(
        outcomes,
        ["transferred", "duplicate", "duplicate", "duplicate"]
    );
}

#[tokio::test]
async fn two_runs_at_once_on_one_embedded_file_send_each_file_once() {
    let mut bed = Bed::start("embedded-two-runs", FtpServerKind::Vsftpd).await;
    bed.use_embedded_store();
    bed.config(&upload(""), None);
    let expected = write_files(&bed.local(), 30, 4096);

    // Two processes on the same file: SQLite's locks serialise their transactions, and the
    // flow lock (a row of the file) their runs; the later one is woken by its poll.
    let (a, b) = tokio::join!(bed.worker_run_ok(), bed.worker_run_ok());
    let transferred =
        |report: &serde_json::Value| report["totals"]["transferred"].as_u64().unwrap_or(0);
    assert_eq!(transferred(&a) + transferred(&b), 30, "{a}\n{b}");
    assert_eq!(bed.remote_files("in"), expected);
    assert_eq!(bed.recorded_names(), expected.keys().cloned().collect());
}
