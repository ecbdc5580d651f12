//! After an upload, before the rename, the stored file is checked on the partner with the
//! strongest check the server offers (`shared/src/ftps/verify.rs`), and each file's report
//! row says which: `sha256` on ProFTPD with mod_digest (`HASH`), `size` on vsftpd (`SIZE`
//! only). A server whose hash of the stored file differs from what ferry sent (pyftpdlib
//! under [`Quirk::Xsha256Lies`]) gets nothing under the final name, and the local file stays.
//! A server whose `226` names the bytes it received is taken at its word only when the count
//! is right; otherwise `SIZE` decides.

use ferry_shared::transfer::{FileReport, Outcome};
use ferry_tests::bed::{Bed, files_in, run, upload, write_files};
use ferry_tests::ftp::{FtpServerKind, FtpServerOptions, Quirk};

/// The `verified` field of a report row, as the JSON report shows it.
fn verified(row: &FileReport) -> serde_json::Value {
    serde_json::to_value(row).expect("row as JSON")["verified"].clone()
}

#[tokio::test]
async fn proftpd_with_mod_digest_checks_the_sha256_of_each_stored_file() {
    let bed = Bed::start("verify-proftpd", FtpServerKind::Proftpd).await;
    let sent = write_files(&bed.local(), 3, 200_000);
    let engine = bed.engine_for(&upload("")).await;

    let report = run(&engine, "run-1").await;

    assert!(report.is_success(), "{:#?}", report.files);
    for row in &report.files {
        assert_eq!(row.outcome, Outcome::Transferred, "{row:?}");
        assert_eq!(verified(row), "sha256", "{row:?}");
    }
    assert_eq!(bed.remote_files("in"), sent);
}

#[tokio::test]
async fn vsftpd_without_a_hash_command_checks_the_size() {
    let bed = Bed::start("verify-vsftpd", FtpServerKind::Vsftpd).await;
    let sent = write_files(&bed.local(), 2, 10_000);
    let engine = bed.engine_for(&upload("")).await;

    let report = run(&engine, "run-1").await;

    assert!(report.is_success(), "{:#?}", report.files);
    for row in &report.files {
        assert_eq!(verified(row), "size", "{row:?}");
    }
    assert_eq!(bed.remote_files("in"), sent);
}

#[tokio::test]
async fn a_transfer_reply_that_names_the_right_count_saves_the_size_command_a_wrong_one_does_not() {
    for (quirk, sizes_asked) in [(Quirk::StorReplyCounts, 0), (Quirk::StorReplyCountsOff, 2)] {
        let bed = Bed::start_with("verify-226", FtpServerOptions::misbehaving(&[quirk])).await;
        let sent = write_files(&bed.local(), 2, 10_000);
        let engine = bed.engine_for(&upload("")).await;

        let report = run(&engine, "run-1").await;

        assert!(report.is_success(), "{quirk:?}: {:#?}", report.files);
        for row in &report.files {
            assert_eq!(verified(row), "size", "{quirk:?}: {row:?}");
        }
        assert_eq!(bed.remote_files("in"), sent, "{quirk:?}");
        let commands = bed.server.received_commands();
        let sizes = commands.iter().filter(|c| c.starts_with("SIZE ")).count();
        assert_eq!(sizes, sizes_asked, "{quirk:?}: {commands:?}");
    }
}

#[tokio::test]
async fn a_stored_file_whose_hash_differs_is_never_renamed_and_the_local_file_stays() {
    let bed = Bed::start_with(
        "verify-lies",
        FtpServerOptions::misbehaving(&[Quirk::Xsha256Lies]),
    )
    .await;
    let sent = write_files(&bed.local(), 1, 5_000);
    let engine = bed.engine_for(&upload("")).await;

    let report = run(&engine, "run-1").await;

    let row = &report.files[0];
    assert_eq!(row.outcome, Outcome::Failed, "{row:?}");
    let error = row.error.as_ref().expect("the failure's reason");
    assert!(
        error.message.contains("sha256 of the stored file"),
        "{error:?}"
    );
    assert!(
        bed.server
            .received_commands()
            .iter()
            .any(|line| line.starts_with("XSHA256 ")),
        "the server was asked for its hash"
    );
    assert!(
        bed.remote_files("in").is_empty(),
        "nothing under a final name"
    );
    assert!(
        ferry_tests::bed::all_names(&bed.server.path("in")).is_empty(),
        "no temporary file left: {:?}",
        ferry_tests::bed::all_names(&bed.server.path("in"))
    );
    assert_eq!(files_in(&bed.local()), sent, "the local file is kept");
}
