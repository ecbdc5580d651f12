//! An upload cut at 60% resumes where the partner's part ends (`REST` + `STOR` onto ferry's
//! own temporary file) and sends only the rest; the whole file's SHA-256 still matches
//! before the rename. pyftpdlib under [`Quirk::CutFirstUpload`] cuts the first `STOR` of a
//! 200 MiB file after 120 MiB; its transfer log shows how many bytes each `STOR` received.
//! With the partner's `disable_resume`, the retry sends the whole file again.

use ferry_tests::bed::{Bed, options, run, upload, write_files};
use ferry_tests::ftp::{CUT_UPLOAD_AT, FtpServerOptions, Quirk};

const SIZE: usize = 200 * 1024 * 1024;

/// The byte counts of the server's `STOR` transfers, from its log (`STOR <file>
/// completed=<0|1> bytes=<n> ...`), in order.
fn stor_bytes(log: &str) -> Vec<(bool, u64)> {
    log.lines()
        .filter_map(|line| {
            let stor = &line[line.find("STOR ")?..];
            let completed = stor.contains("completed=1");
            let bytes = stor.split("bytes=").nth(1)?.split_whitespace().next()?;
            Some((completed, bytes.parse().ok()?))
        })
        .collect()
}

#[tokio::test]
async fn an_upload_cut_at_60_percent_sends_only_the_rest_and_its_hash_matches() {
    let bed = Bed::start_with(
        "resume",
        FtpServerOptions::misbehaving(&[Quirk::CutFirstUpload]),
    )
    .await;
    let sent = write_files(&bed.local(), 1, SIZE);
    let engine = bed.engine_for(&upload("")).await;

    let report = run(&engine, "run-1").await;

    assert!(report.is_success(), "{:#?}", report.files);
    assert_eq!(
        bed.remote_files("in"),
        sent,
        "the whole file, its hash intact"
    );
    let commands = bed.server.received_commands();
    assert!(
        commands.contains(&format!("REST {CUT_UPLOAD_AT}")),
        "resumed at the part's end: {commands:?}"
    );
    let stors = stor_bytes(&bed.server.log_text());
    let completed: Vec<u64> = stors.iter().filter(|s| s.0).map(|s| s.1).collect();
    assert_eq!(
        completed,
        [SIZE as u64 - CUT_UPLOAD_AT],
        "the retry sent only the rest: {stors:?}"
    );
}

#[tokio::test]
async fn with_disable_resume_the_retry_sends_the_whole_file() {
    let bed = Bed::start_with(
        "no-resume",
        FtpServerOptions::misbehaving(&[Quirk::CutFirstUpload]),
    )
    .await;
    let sent = write_files(&bed.local(), 1, SIZE);
    let config = bed.config_with_connection(&upload(""), "    disable_resume: true\n");
    let engine = bed.engine(config, options("w1")).await;

    let report = run(&engine, "run-1").await;

    assert!(report.is_success(), "{:#?}", report.files);
    assert_eq!(bed.remote_files("in"), sent);
    assert!(
        !bed.server
            .received_commands()
            .iter()
            .any(|c| c.starts_with("REST ")),
        "no REST sent"
    );
    let stors = stor_bytes(&bed.server.log_text());
    let completed: Vec<u64> = stors.iter().filter(|s| s.0).map(|s| s.1).collect();
    assert_eq!(completed, [SIZE as u64], "{stors:?}");
}
