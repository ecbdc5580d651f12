//! An upload cut at 60% resumes where the partner's part ends (`REST` + `STOR` onto ferry's
//! own temporary file) and sends only the rest; the whole file's SHA-256 still matches
//! before the rename. pyftpdlib under [`Quirk::CutFirstUpload`] cuts the first `STOR` of a
//! 200 MiB file after 120 MiB; its transfer log shows how many bytes each `STOR` received.
//! With the partner's `disable_resume`, the retry sends the whole file again.
//!
//! Downloads the same way: under [`Quirk::CutFirstDownload`] the first `RETR` of a 200 MiB
//! file is cut after 120 MiB; the retry asks `REST` at the kept part's end and receives only
//! the rest, and the local file's hash is the partner's file's.

use ferry_tests::bed::{Bed, all_names, download, files_in, options, run, upload, write_files};
use ferry_tests::fleet::noise;
use ferry_tests::ftp::{CUT_DOWNLOAD_AT, CUT_UPLOAD_AT, FtpServerOptions, Quirk};

const SIZE: usize = 200 * 1024 * 1024;

/// The byte counts of the server's transfers of `command` (`"STOR "`, `"RETR "`), from its
/// log (`STOR <file> completed=<0|1> bytes=<n> ...`), in order.
fn transfer_bytes(bed: &Bed, command: &str) -> Vec<(bool, u64)> {
    bed.server
        .log_text()
        .lines()
        .filter_map(|line| {
            let transfer = &line[line.find(command)?..];
            let completed = transfer.contains("completed=1");
            let bytes = transfer.split("bytes=").nth(1)?.split_whitespace().next()?;
            Some((completed, bytes.parse().ok()?))
        })
        .collect()
}

/// The byte counts of the transfers of `command` that completed.
fn completed_bytes(bed: &Bed, command: &str) -> Vec<u64> {
    transfer_bytes(bed, command)
        .into_iter()
        .filter_map(|(completed, bytes)| completed.then_some(bytes))
        .collect()
}

/// Whether ferry sent `REST` at all.
fn sent_rest(bed: &Bed) -> bool {
    bed.server
        .received_commands()
        .iter()
        .any(|c| c.starts_with("REST "))
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
    assert_eq!(
        completed_bytes(&bed, "STOR "),
        [SIZE as u64 - CUT_UPLOAD_AT],
        "the retry sent only the rest: {:?}",
        transfer_bytes(&bed, "STOR ")
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
    assert!(!sent_rest(&bed), "no REST sent");
    assert_eq!(completed_bytes(&bed, "STOR "), [SIZE as u64]);
}

#[tokio::test]
async fn a_download_cut_at_60_percent_fetches_only_the_rest_and_its_hash_matches() {
    let bed = Bed::start_with(
        "resume-down",
        FtpServerOptions::misbehaving(&[Quirk::CutFirstDownload]),
    )
    .await;
    bed.server
        .write_file("out/big.xml", &noise(SIZE, 7))
        .expect("remote file");
    let engine = bed.engine_for(&download("")).await;

    let report = run(&engine, "run-1").await;

    assert!(report.is_success(), "{:#?}", report.files);
    assert_eq!(
        files_in(&bed.local()),
        bed.remote_files("out"),
        "the whole file, its hash the partner's"
    );
    assert_eq!(all_names(&bed.local()), ["big.xml"], "no part left behind");
    let commands = bed.server.received_commands();
    assert!(
        commands.contains(&format!("REST {CUT_DOWNLOAD_AT}")),
        "continued at the kept part's end: {commands:?}"
    );
    assert_eq!(
        completed_bytes(&bed, "RETR "),
        [SIZE as u64 - CUT_DOWNLOAD_AT],
        "the retry received only the rest: {:?}",
        transfer_bytes(&bed, "RETR ")
    );
}

#[tokio::test]
async fn with_disable_resume_a_cut_download_is_fetched_whole_again() {
    let bed = Bed::start_with(
        "no-resume-down",
        FtpServerOptions::misbehaving(&[Quirk::CutFirstDownload]),
    )
    .await;
    bed.server
        .write_file("out/big.xml", &noise(SIZE, 8))
        .expect("remote file");
    let config = bed.config_with_connection(&download(""), "    disable_resume: true\n");
    let engine = bed.engine(config, options("w1")).await;

    let report = run(&engine, "run-1").await;

    assert!(report.is_success(), "{:#?}", report.files);
    assert_eq!(files_in(&bed.local()), bed.remote_files("out"));
    assert_eq!(all_names(&bed.local()), ["big.xml"], "no part left behind");
    assert!(!sent_rest(&bed), "no REST sent");
    assert_eq!(completed_bytes(&bed, "RETR "), [SIZE as u64]);
}

/// A server that answers `REST` with 350 and then sends the whole file: the stream is
/// longer than the file, nothing is renamed into place, the part is dropped, and the next
/// attempt fetches the whole file (contributed by helper R, adapted).
#[tokio::test]
async fn a_server_that_ignores_rest_still_ends_with_the_right_file() {
    let bed = Bed::start_with(
        "rest-ignored",
        FtpServerOptions::misbehaving(&[Quirk::CutFirstDownload, Quirk::RestIgnored]),
    )
    .await;
    bed.server
        .write_file("out/big.xml", &noise(SIZE, 9))
        .expect("remote file");
    let engine = bed.engine_for(&download("")).await;

    let report = run(&engine, "run-1").await;

    assert!(report.is_success(), "{:#?}", report.files);
    assert_eq!(
        files_in(&bed.local()),
        bed.remote_files("out"),
        "never a corrupt file"
    );
    assert_eq!(all_names(&bed.local()), ["big.xml"], "no part left behind");
    assert!(
        bed.server
            .received_commands()
            .contains(&format!("REST {CUT_DOWNLOAD_AT}")),
        "a resume was tried"
    );
    let retrs = transfer_bytes(&bed, "RETR ");
    assert_eq!(
        retrs.last(),
        Some(&(true, SIZE as u64)),
        "the last attempt fetched the whole file: {retrs:?}"
    );
}
