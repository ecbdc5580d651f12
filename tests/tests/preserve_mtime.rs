//! `preserve_mtime: true` keeps each file's modification time at the destination: on the
//! partner with `MFMT` (ProFTPD offers it; the time is set on the temporary file, so the
//! final name never shows a wrong one), and on the local copy of a download (vsftpd's
//! `MDTM`). Without the option the destination's time is the transfer's.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ferry_tests::bed::{Bed, download, run, upload, write_files};
use ferry_tests::ftp::FtpServerKind;

/// 2020-01-02T03:04:05Z: far from any time a transfer could give a file.
fn old_time() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_577_934_245)
}

fn set_mtime(path: &Path, time: SystemTime) {
    std::fs::File::options()
        .write(true)
        .open(path)
        .and_then(|f| f.set_modified(time))
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}

fn mtime(path: &Path) -> SystemTime {
    std::fs::metadata(path)
        .and_then(|m| m.modified())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[tokio::test]
async fn an_upload_to_proftpd_keeps_the_local_files_time() {
    let bed = Bed::start("mtime-up", FtpServerKind::Proftpd).await;
    let sent = write_files(&bed.local(), 2, 1_000);
    for name in sent.keys() {
        set_mtime(&bed.local().join(name), old_time());
    }
    let engine = bed.engine_for(&upload("    preserve_mtime: true\n")).await;

    let report = run(&engine, "run-1").await;

    assert!(report.is_success(), "{:#?}", report.files);
    assert_eq!(bed.remote_files("in"), sent);
    for name in sent.keys() {
        assert_eq!(
            mtime(&bed.server.path(&format!("in/{name}"))),
            old_time(),
            "{name}"
        );
    }
}

#[tokio::test]
async fn without_the_option_the_partner_shows_the_transfer_time() {
    let bed = Bed::start("mtime-off", FtpServerKind::Proftpd).await;
    let sent = write_files(&bed.local(), 1, 1_000);
    let name = sent.keys().next().unwrap();
    set_mtime(&bed.local().join(name), old_time());
    let engine = bed.engine_for(&upload("")).await;

    let report = run(&engine, "run-1").await;

    assert!(report.is_success(), "{:#?}", report.files);
    assert_ne!(mtime(&bed.server.path(&format!("in/{name}"))), old_time());
}

#[tokio::test]
async fn a_download_gets_the_partner_files_time() {
    let bed = Bed::start("mtime-down", FtpServerKind::Vsftpd).await;
    bed.server
        .write_file("out/a.xml", b"<a/>")
        .expect("remote file");
    set_mtime(&bed.server.path("out/a.xml"), old_time());
    let engine = bed
        .engine_for(&download("    preserve_mtime: true\n"))
        .await;

    let report = run(&engine, "run-1").await;

    assert!(report.is_success(), "{:#?}", report.files);
    assert_eq!(std::fs::read(bed.local().join("a.xml")).unwrap(), b"<a/>");
    assert_eq!(mtime(&bed.local().join("a.xml")), old_time());
}
