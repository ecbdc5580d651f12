//! The embedded store (`store: { kind: embedded, path: ... }`) through the binaries:
//! `ferry-worker run` delivers with it and skips the duplicates on the next run, the fleet's
//! processes refuse it, and a run killed with `SIGKILL` mid-transfer is finished by the next
//! run: every file at the partner exactly once, and recorded.

use ferry_tests::bed::{Bed, parse_run, upload, write_files};
use ferry_tests::ftp::FtpServerKind;

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

async fn run_ok(bed: &Bed) -> serde_json::Value {
    let output = bed.worker_run().output().await.expect("run");
    let (code, report) = parse_run(&output);
    assert_eq!(
        code,
        Some(0),
        "{report}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    report
}

#[tokio::test]
async fn worker_run_on_the_embedded_store_delivers_then_skips_the_duplicates() {
    let mut bed = Bed::start("embedded-run", FtpServerKind::Vsftpd).await;
    bed.use_embedded_store();
    bed.config(&upload(""), None);
    let expected = write_files(&bed.local(), 3, 10 * 1024);

    let first = run_ok(&bed).await;
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

    let second = run_ok(&bed).await;
    assert_eq!(outcomes(&second), ["duplicate"; 3], "{second}");
    assert_eq!(bed.remote_files("in"), expected, "nothing sent twice");
}
