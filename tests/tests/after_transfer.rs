//! What a flow does with a delivered file's source: `after_upload: archive` moves the local
//! file into an archive folder (dated, never overwriting), `after_download: move` renames
//! the partner's file into a processed folder; and the configuration refuses the
//! ambiguous or dangerous combinations. Real FTPS servers, the real Redis.

use std::path::Path;
use std::time::Duration;

use ferry_shared::broker::{Headers, PublisherOptions};
use ferry_shared::config::{Config, ConfigErrors, render_summary};
use ferry_shared::message::{FlowRunMessage, Trigger};
use ferry_shared::transfer::{Outcome, as_run_attempt};
use ferry_tests::bed::{
    Bed, download, files_in, names_with, options, run, sha256_hex, upload, write_files,
};
use ferry_tests::fleet::{Fleet, FleetOptions};
use ferry_tests::ftp::FtpServerKind;
use ferry_tests::ports::free_port;

/// The dated archive folder of today (UTC), under `archive`.
fn dated(archive: &Path) -> std::path::PathBuf {
    let today = std::process::Command::new("date")
        .args(["-u", "+%Y/%m/%d"])
        .output()
        .expect("date");
    archive.join(String::from_utf8(today.stdout).expect("utf-8").trim())
}

#[tokio::test]
async fn upload_archive_holds_exactly_the_delivered_files_and_never_overwrites() {
    let bed = Bed::start("archive-up", FtpServerKind::Vsftpd).await;
    let sent = write_files(&bed.local(), 3, 2048);
    // Inside the local folder on purpose: `*.xml` does not reach into `archive/`.
    let flow = upload(
        "    after_upload: archive\n    archive_path: ./local/archive\n    archive_date_folders: true\n",
    );
    let engine = bed.engine_for(&flow).await;

    let report = run(&engine, "run-1").await;

    assert!(report.is_success(), "{}", report.summary_line());
    let archive = dated(&bed.local().join("archive"));
    assert_eq!(
        files_in(&archive),
        sent,
        "archive = the delivered files, bytes equal"
    );
    assert_eq!(bed.remote_files("in"), sent, "the partner has them all");
    assert!(files_in(&bed.local()).is_empty(), "none left in the source");

    // A new file under an archived name: delivered, archived beside the first one.
    std::fs::write(bed.local().join("f000.xml"), b"<second f000/>").expect("again");
    let report = run(&engine, "run-2").await;

    assert_eq!(
        names_with(&report, Outcome::Transferred),
        ["f000.xml"],
        "the second run takes only the new file, never an archived one"
    );
    let archived = files_in(&archive);
    assert_eq!(
        archived["f000.xml"], sent["f000.xml"],
        "first kept as it was"
    );
    assert_eq!(archived["f000-1.xml"], sha256_hex(b"<second f000/>"));
    assert_eq!(archived.len(), 4);
    assert!(files_in(&bed.local()).is_empty());
}

#[tokio::test]
async fn upload_archive_without_date_folders_goes_straight_into_the_folder() {
    let bed = Bed::start("archive-flat", FtpServerKind::Proftpd).await;
    std::fs::write(bed.local().join("a.xml"), b"<a/>").expect("a");
    let flow = upload("    after_upload: archive\n    archive_path: ./archived\n");
    let engine = bed.engine_for(&flow).await;

    let report = run(&engine, "run-1").await;

    assert!(report.is_success(), "{}", report.summary_line());
    assert_eq!(
        files_in(&bed.dir.path().join("archived")),
        [("a.xml".to_owned(), sha256_hex(b"<a/>"))].into()
    );
    assert!(files_in(&bed.local()).is_empty());
}

#[tokio::test]
async fn download_move_leaves_the_files_in_the_partners_processed_folder() {
    let bed = Bed::start("move-down", FtpServerKind::Vsftpd).await;
    bed.server.create_dir("out/processed").expect("processed/");
    bed.server.write_file("out/a.xml", b"<a/>").expect("a");
    bed.server.write_file("out/b.xml", b"<b/>").expect("b");
    // An older processed `a.xml`: never replaced.
    bed.server
        .write_file("out/processed/a.xml", b"<old a/>")
        .expect("old a");
    let flow = download("    after_download: move\n    move_path: /out/processed\n");
    let engine = bed.engine_for(&flow).await;

    let report = run(&engine, "run-1").await;

    assert!(report.is_success(), "{}", report.summary_line());
    assert_eq!(
        names_with(&report, Outcome::Transferred),
        ["a.xml", "b.xml"]
    );
    assert!(bed.remote_files("out").is_empty(), "nothing left to fetch");
    let processed = bed.remote_files("out/processed");
    assert_eq!(
        processed,
        [
            ("a-1.xml".to_owned(), sha256_hex(b"<a/>")),
            ("a.xml".to_owned(), sha256_hex(b"<old a/>")),
            ("b.xml".to_owned(), sha256_hex(b"<b/>")),
        ]
        .into()
    );
    assert_eq!(files_in(&bed.local()).len(), 2, "fetched locally");

    let report = run(&engine, "run-2").await;
    assert!(report.files.is_empty(), "moved files are not fetched again");
}

/// Writes flow `f` with `extra` lines over a valid bed configuration and loads it.
fn load_flow(bed: &Bed, direction: &str, extra: &str) -> Result<Config, ConfigErrors> {
    let (side, remote) = if direction == "upload" {
        ("target", "/in")
    } else {
        ("source", "/out")
    };
    let flows = format!(
        "flows:\n  f:\n    direction: {direction}\n    {side}:\n      partner: partner\n      \
         path: {remote}\n    local:\n      path: ./local\n    files:\n      - pattern: \"**/*.xml\"\n{extra}"
    );
    std::fs::write(bed.dir.path().join("flows/f.yaml"), flows).expect("flow");
    Config::load(bed.dir.path())
}

fn only_error(result: Result<Config, ConfigErrors>) -> (String, Option<u32>, String, String) {
    let Err(errors) = result else {
        panic!("should be refused");
    };
    let [error] = errors.errors() else {
        panic!("one error expected: {errors}");
    };
    (
        error.file.display().to_string(),
        error.line,
        error.field.clone(),
        error.message.clone(),
    )
}

#[tokio::test]
async fn refuses_both_forms_and_archives_the_selection_would_reach() {
    let bed = Bed::start("after-config", FtpServerKind::Vsftpd).await;
    bed.config(&upload(""), None);

    let both =
        "    after_upload: archive\n    archive_path: /tmp/a\n    delete_after_upload: true\n";
    let (file, line, field, message) = only_error(load_flow(&bed, "upload", both));
    assert_eq!(
        (file.as_str(), line, field.as_str()),
        ("flows/f.yaml", Some(13), "flows.f.delete_after_upload")
    );
    assert!(message.contains("not both"), "{message}");

    // `**/*.xml` reaches into ./local/archive unless it is excluded.
    let inside = "    after_upload: archive\n    archive_path: ./local/archive\n";
    let (_, _, field, message) = only_error(load_flow(&bed, "upload", inside));
    assert_eq!(field, "flows.f.archive_path");
    assert!(message.contains("exclude it"), "{message}");

    let missing = "    after_upload: archive\n";
    let (_, _, field, _) = only_error(load_flow(&bed, "upload", missing));
    assert_eq!(field, "flows.f.archive_path");

    let same = "    after_download: move\n    move_path: /out/\n";
    let (_, _, field, message) = only_error(load_flow(&bed, "download", same));
    assert_eq!(field, "flows.f.move_path");
    assert!(message.contains("fetched again"), "{message}");

    let wrong = "    after_upload: move\n";
    let (_, _, field, _) = only_error(load_flow(&bed, "upload", wrong));
    assert_eq!(field, "flows.f.after_upload");

    let fine = "    after_upload: archive\n    archive_path: ./archive\n    on_failure: move\n    error_path: ./errors\n";
    let config = load_flow(&bed, "upload", fine).unwrap_or_else(|e| panic!("{e}"));
    let now = serde_json::from_str("\"2026-12-04T00:00:00Z\"").expect("time");
    let summary = render_summary(&config, now);
    let archive = bed.dir.path().join("archive");
    assert!(
        summary.contains(&format!("after upload: archive to {}", archive.display())),
        "{summary}"
    );
    assert!(summary.contains("on failure: move to"), "{summary}");
}

/// A transient failure (the partner unreachable) moves the file only in the flow-run's
/// last attempt.
#[tokio::test]
async fn upload_error_folder_holds_the_failed_file_only_after_its_last_run_attempt() {
    let bed = Bed::start("error-up", FtpServerKind::Vsftpd).await;
    std::fs::write(bed.local().join("a.xml"), b"<a/>").expect("a");
    let flow = upload("    on_failure: move\n    error_path: ./errors\n");
    let unreachable = bed.config(&flow, Some(free_port()));
    let engine = bed.engine(unreachable, options("w1")).await;
    let errors = bed.dir.path().join("errors");

    let report = as_run_attempt(false, run(&engine, "run-1")).await;

    assert_eq!(names_with(&report, Outcome::Failed), ["a.xml"]);
    assert!(
        !errors.exists(),
        "not the last flow-run attempt: nothing moved"
    );
    assert_eq!(files_in(&bed.local()).len(), 1, "a.xml stays for the retry");

    let report = as_run_attempt(true, run(&engine, "run-2")).await;

    assert_eq!(names_with(&report, Outcome::Failed), ["a.xml"]);
    assert!(files_in(&bed.local()).is_empty(), "moved out of the source");
    let held = files_in(&errors);
    assert_eq!(
        held.keys().collect::<Vec<_>>(),
        ["a.xml", "a.xml.error.json"]
    );
    assert_eq!(held["a.xml"], sha256_hex(b"<a/>"));
    let reason = read_reason(&errors.join("a.xml.error.json"));
    assert_eq!(reason["flow"], "f");
    assert_eq!(reason["run_id"], "run-2");
    let kind = report.files[0].error.as_ref().expect("error").kind.as_str();
    assert_eq!(reason["error_kind"], kind);
}

/// A permanent failure (`target_exists`: no retry can help) moves at once, in any attempt;
/// on a download, into the error folder on the partner.
#[tokio::test]
async fn download_error_folder_on_the_partner_holds_a_permanently_failed_file_at_once() {
    let bed = Bed::start("error-down", FtpServerKind::Vsftpd).await;
    bed.server.create_dir("errors").expect("errors/");
    bed.server.write_file("out/c.xml", b"<c/>").expect("c");
    bed.server.write_file("out/d.xml", b"<d/>").expect("d");
    // A local `c.xml` is never replaced by a download: `c.xml` fails for good.
    std::fs::write(bed.local().join("c.xml"), b"<local c/>").expect("local c");
    let flow = download("    on_failure: move\n    error_path: /errors\n");
    let engine = bed.engine_for(&flow).await;

    // Not the run's last attempt, but no retry can help `target_exists`.
    let report = as_run_attempt(false, run(&engine, "run-1")).await;

    assert_eq!(names_with(&report, Outcome::Failed), ["c.xml"]);
    assert!(
        !bed.server.path("out/c.xml").exists(),
        "moved off the source folder"
    );
    assert!(
        bed.server.path("out/d.xml").exists(),
        "the fetched one is kept"
    );
    let held = bed.remote_files("errors");
    assert_eq!(
        held.keys().collect::<Vec<_>>(),
        ["c.xml", "c.xml.error.json"]
    );
    assert_eq!(held["c.xml"], sha256_hex(b"<c/>"));
    let reason = read_reason(&bed.server.path("errors/c.xml.error.json"));
    assert_eq!(reason["run_id"], "run-1");
    assert_eq!(reason["error_kind"], "target_exists");
}

fn read_reason(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).expect("reason file")).expect("reason json")
}

/// The worker says which flow-run attempt is the last: a file failing transiently (the
/// partner unreachable) stays through the first attempt (else the second would have
/// nothing to fail on, and the run would not be dead-lettered) and is in the error folder
/// after the last.
#[tokio::test]
async fn a_worker_moves_the_failed_file_in_the_runs_last_attempt_only() {
    let fleet = Fleet::start(
        "error-worker",
        FleetOptions {
            retry_delays: vec!["1s".into()],
            max_attempts: 2,
            partner_port: Some(free_port()),
            ..FleetOptions::default()
        },
    )
    .await
    .expect("fleet");
    let flow_file = fleet.config_dir().join("flows/f.yaml");
    let mut flow = std::fs::read_to_string(&flow_file).expect("flow");
    flow.push_str("    on_failure: move\n    error_path: ./errors\n");
    std::fs::write(&flow_file, flow).expect("flow");
    fleet.write_local("a.xml", b"<a/>").expect("local a");
    fleet.config().expect("the configuration loads");
    let mut worker = fleet.spawn_worker("w").expect("worker");
    let broker = fleet.broker().await.expect("broker");
    broker
        .publisher(PublisherOptions::default())
        .publish(
            &FlowRunMessage::new("f", Trigger::Manual, None),
            &Headers::new(),
        )
        .await
        .expect("publish");

    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while broker.dead_letter_depth().await.unwrap_or(0) == 0 {
        assert!(worker.is_running(), "{}", worker.tail(30));
        assert!(
            tokio::time::Instant::now() < deadline,
            "no dead letter:\n{}",
            worker.tail(30)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    worker.stop(Duration::from_secs(30)).await.expect("stop");
    let _ = broker.close().await;

    let errors = fleet.config_dir().join("errors");
    let held = files_in(&errors);
    assert_eq!(
        held.keys().collect::<Vec<_>>(),
        ["a.xml", "a.xml.error.json"]
    );
    assert_eq!(held["a.xml"], sha256_hex(b"<a/>"));
    assert!(files_in(&fleet.local()).is_empty());
    let reason = read_reason(&errors.join("a.xml.error.json"));
    assert_ne!(reason["error_kind"], "target_exists");
}
