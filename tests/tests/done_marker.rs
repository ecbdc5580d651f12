//! `done_marker: "{name}.done"`, the partner convention of a marker beside each complete
//! file: a download takes a file only once its marker is there, never takes the markers
//! themselves, and deletes the marker with the file; an upload writes the marker (empty)
//! after the file is renamed into place; a process killed between the rename and the marker
//! leaves the next run to write the marker before it records the delivery.

use ferry_shared::crash_point::CrashPoint;
use ferry_shared::transfer::Outcome;
use ferry_tests::bed::{Bed, all_names, download, names_with, run, upload, write_files};
use ferry_tests::ftp::{FtpServerKind, FtpServerOptions};

const MARKER: &str = "    done_marker: \"{name}.done\"\n";

#[tokio::test]
async fn a_download_waits_for_the_marker_and_deletes_it_with_the_file() {
    let bed = Bed::start("marker-down", FtpServerKind::Vsftpd).await;
    bed.server.write_file("out/a.xml", b"<a/>").unwrap();
    bed.server.write_file("out/a.xml.done", b"").unwrap();
    bed.server.write_file("out/b.xml", b"<b/>").unwrap();
    let engine = bed
        .engine_for(&download(&format!("{MARKER}    after_download: delete\n")))
        .await;

    let first = run(&engine, "run-1").await;

    assert_eq!(names_with(&first, Outcome::Transferred), ["a.xml"]);
    assert_eq!(first.not_yet_stable, ["b.xml"], "b waits for its marker");
    assert_eq!(all_names(&bed.local()), ["a.xml"], "no marker fetched");
    assert_eq!(
        all_names(&bed.server.path("out")),
        ["b.xml"],
        "a.xml went with its marker"
    );

    bed.server.write_file("out/b.xml.done", b"").unwrap();
    let second = run(&engine, "run-2").await;

    assert_eq!(names_with(&second, Outcome::Transferred), ["b.xml"]);
    assert_eq!(std::fs::read(bed.local().join("b.xml")).unwrap(), b"<b/>");
    assert!(all_names(&bed.server.path("out")).is_empty());
}

#[tokio::test]
async fn an_upload_writes_the_marker_after_the_rename() {
    let bed = Bed::start_with("marker-up", FtpServerOptions::new(FtpServerKind::Pyftpdlib)).await;
    let sent = write_files(&bed.local(), 1, 2_000);
    let name = sent.keys().next().unwrap().clone();
    let engine = bed.engine_for(&upload(MARKER)).await;

    let report = run(&engine, "run-1").await;

    assert!(report.is_success(), "{:#?}", report.files);
    let on_partner = bed.remote_files("in");
    assert_eq!(on_partner[&name], sent[&name]);
    assert_eq!(
        on_partner.len(),
        2,
        "the file and its marker: {on_partner:?}"
    );
    let marker = bed.server.path(&format!("in/{name}.done"));
    assert_eq!(std::fs::read(&marker).unwrap(), b"", "an empty marker");
    let commands = bed.server.received_commands();
    let rename = commands
        .iter()
        .position(|c| c.starts_with("RNTO ") && c.ends_with(&format!("/{name}")))
        .unwrap_or_else(|| panic!("no RNTO of {name}: {commands:?}"));
    let stor_marker = commands
        .iter()
        .position(|c| c.starts_with("STOR ") && c.ends_with(&format!("/{name}.done")))
        .unwrap_or_else(|| panic!("no STOR of the marker: {commands:?}"));
    assert!(
        rename < stor_marker,
        "the marker comes after the rename: {commands:?}"
    );
}

#[tokio::test]
async fn killed_between_the_rename_and_the_marker_the_next_run_writes_the_marker() {
    let bed = Bed::start("marker-crash", FtpServerKind::Vsftpd).await;
    let sent = write_files(&bed.local(), 1, 2_000);
    let name = sent.keys().next().unwrap().clone();
    bed.config(&upload(MARKER), None);

    bed.crash_run_at(CrashPoint::Renamed, 1).await;
    assert!(
        !bed.server.path(&format!("in/{name}.done")).exists(),
        "the crash came before the marker"
    );
    let report = bed.worker_run_ok().await;

    assert_eq!(
        std::fs::read(bed.server.path(&format!("in/{name}.done"))).unwrap(),
        b"",
        "{report}"
    );
    assert_eq!(bed.remote_files("in")[&name], sent[&name]);
    assert_eq!(bed.recorded_names().len(), 1, "recorded once: {report}");
}
