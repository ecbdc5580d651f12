//! Kill drills: a real `ferry-worker run` is killed (`SIGKILL`, as `kill -9` would) at each
//! crash point of the transfer path (`ferry_shared::crash_point`), at the first file to reach
//! it and at a later one, in both directions; then a new process runs the flow again.
//!
//! After every crash: nothing partial carries a final name, and a source is gone only if
//! its delivery is recorded (uploads) or in place (downloads). After the rerun: every file
//! at its destination exactly once with its bytes, no temporary file left, no file renamed
//! a second time (the inode under a final name is the one the crashed run gave it), no
//! commit intent left, every source tidied, and a further run finds nothing to do. The
//! rerun does not wait for the dead process's leases: its claims and flow lock are taken
//! over at once, being a dead process's of this host.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use ferry_shared::crash_point::CrashPoint;
use ferry_tests::bed::{Bed, all_names, download, files_in, upload, write_files};
use ferry_tests::ftp::FtpServerKind;

/// Files per drill: enough that a later file can be the one killed while others are done.
const FILES: usize = 4;
/// Large enough for several buffers per file (a crash mid-stream is mid-stream).
const SIZE: usize = 300 * 1024;

/// Inode of each non-hidden file of `dir`.
fn inodes(dir: &Path) -> BTreeMap<String, u64> {
    std::fs::read_dir(dir)
        .expect("read dir")
        .filter_map(Result::ok)
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            (name, e.metadata().expect("metadata").ino())
        })
        .collect()
}

/// Makes a broken takeover fail the drill instead of waiting it out: claims that would
/// outlast the test and no wait for a busy flow lock, so the rerun succeeds only if it takes
/// the dead process's claims and lock over at once.
fn no_waiting_out_leases(bed: &Bed) {
    let path = bed.dir.path().join("ferry.yaml");
    let settings = std::fs::read_to_string(&path).expect("ferry.yaml");
    assert!(settings.contains("claim_lease: 3s"), "{settings}");
    let settings = settings.replace("claim_lease: 3s", "claim_lease: 10m\n  flow_lock_wait: 0s");
    std::fs::write(&path, settings).expect("ferry.yaml");
}

/// How the rerun's row of the killed file must say it was finished from the dead attempt's
/// intent, for the crash points that leave one.
fn expected_recovery(point: CrashPoint) -> Option<&'static str> {
    match point {
        CrashPoint::IntentWritten => Some("renamed_leftover"),
        CrashPoint::Renamed => Some("found_in_place"),
        _ => None,
    }
}

/// The rerun finished every file the dead process had committed from its intent (other
/// files of a parallel run may have been at that step too), and sent none again.
fn assert_recovered(report: &serde_json::Value, point: CrashPoint) -> usize {
    let words = recoveries(report);
    assert!(
        words
            .iter()
            .all(|w| matches!(*w, "renamed_leftover" | "found_in_place")),
        "{report}"
    );
    if let Some(word) = expected_recovery(point) {
        assert!(words.contains(&word), "{report}");
    }
    words.len()
}

/// The `recovery` words of a report's rows.
fn recoveries(report: &serde_json::Value) -> Vec<&str> {
    report["files"]
        .as_array()
        .expect("rows")
        .iter()
        .filter_map(|row| row["recovery"].as_str())
        .collect()
}

/// Every name in `found` maps to the hash `expected` gives it: nothing partial, nothing
/// foreign under a final name.
fn only_whole_files(found: &BTreeMap<String, String>, expected: &BTreeMap<String, String>) {
    for (name, hash) in found {
        assert_eq!(Some(hash), expected.get(name), "{name} is not whole");
    }
}

async fn upload_drill(point: CrashPoint, nth: u32) {
    let bed = Bed::start(
        &format!("kill-up-{}", point.as_str()),
        FtpServerKind::Vsftpd,
    )
    .await;
    bed.config(&upload("    delete_after_upload: true\n"), None);
    no_waiting_out_leases(&bed);
    let expected = write_files(&bed.local(), FILES, SIZE);

    bed.crash_run_at(point, nth).await;

    let remote = bed.remote_files("in");
    only_whole_files(&remote, &expected);
    let recorded = bed.recorded_names();
    for name in expected.keys() {
        if !bed.local().join(name).exists() {
            assert!(
                recorded.contains(name),
                "{name}: source deleted before its delivery was recorded"
            );
            assert!(
                remote.contains_key(name),
                "{name}: source deleted, not delivered"
            );
        }
    }
    let placed = inodes(&bed.server.path("in"));

    let report = bed.worker_run_ok().await;

    assert_recovered(&report, point);
    assert_eq!(
        bed.remote_files("in"),
        expected,
        "every file once, whole\n{report}"
    );
    assert_eq!(
        all_names(&bed.server.path("in")),
        expected.keys().cloned().collect::<Vec<_>>(),
        "no temporary file left on the partner"
    );
    let after = inodes(&bed.server.path("in"));
    for (name, inode) in &placed {
        assert_eq!(
            after.get(name),
            Some(inode),
            "{name} was renamed into place twice"
        );
    }
    assert!(all_names(&bed.local()).is_empty(), "every source tidied");
    assert!(bed.flow_keys("intent").is_empty(), "no commit intent left");
    assert!(bed.flow_keys("claim").is_empty(), "no claim left");
    let again = bed.worker_run_ok().await;
    assert_eq!(again["files"].as_array().map(Vec::len), Some(0), "{again}");
}

async fn download_drill(point: CrashPoint, nth: u32) {
    let bed = Bed::start(
        &format!("kill-down-{}", point.as_str()),
        FtpServerKind::Vsftpd,
    )
    .await;
    bed.config(&download("    delete_after_download: true\n"), None);
    no_waiting_out_leases(&bed);
    let expected = write_files(&bed.server.path("out"), FILES, SIZE);

    bed.crash_run_at(point, nth).await;

    let local = files_in(&bed.local());
    only_whole_files(&local, &expected);
    let remote = bed.remote_files("out");
    for name in expected.keys() {
        if !remote.contains_key(name) {
            assert!(
                local.contains_key(name),
                "{name}: remote deleted, not in place"
            );
            assert!(
                bed.recorded_names().contains(name),
                "{name}: remote deleted before its delivery was recorded"
            );
        }
    }
    let placed = inodes(&bed.local());

    let report = bed.worker_run_ok().await;

    let recovered = assert_recovered(&report, point);
    assert_eq!(
        files_in(&bed.local()),
        expected,
        "every file once, whole\n{report}"
    );
    assert_eq!(
        all_names(&bed.local()),
        expected.keys().cloned().collect::<Vec<_>>(),
        "no part file left"
    );
    let after = inodes(&bed.local());
    for (name, inode) in &placed {
        assert_eq!(
            after.get(name),
            Some(inode),
            "{name} was put in place twice"
        );
    }
    assert!(bed.flow_keys("intent").is_empty(), "no commit intent left");
    // A file finished from the dead attempt's part stays on the partner until a run has
    // fetched it again and compared it: that run reports it a duplicate and deletes it.
    let tidy = bed.worker_run_ok().await;
    assert_eq!(tidy["totals"]["skipped_duplicates"], recovered, "{tidy}");
    assert!(
        all_names(&bed.server.path("out")).is_empty(),
        "every remote file tidied"
    );
    assert_eq!(
        files_in(&bed.local()),
        expected,
        "the recheck changed nothing"
    );
    let again = bed.worker_run_ok().await;
    assert_eq!(again["files"].as_array().map(Vec::len), Some(0), "{again}");
}

/// One test per crash point and direction, each killing the first file to get there and
/// then, on a fresh bed, the third.
macro_rules! drills {
    ($($name:ident: $drill:ident($point:expr);)*) => {$(
        #[tokio::test]
        async fn $name() {
            $drill($point, 1).await;
            $drill($point, 3).await;
        }
    )*};
}

drills! {
    upload_killed_once_claimed: upload_drill(CrashPoint::Claimed);
    upload_killed_mid_stream: upload_drill(CrashPoint::MidStream);
    upload_killed_after_the_servers_226: upload_drill(CrashPoint::AfterTransferReply);
    upload_killed_once_staged: upload_drill(CrashPoint::Staged);
    upload_killed_between_intent_and_rename: upload_drill(CrashPoint::IntentWritten);
    upload_killed_between_rename_and_record: upload_drill(CrashPoint::Renamed);
    upload_killed_after_the_record: upload_drill(CrashPoint::Recorded);
    upload_killed_after_deleting_the_source: upload_drill(CrashPoint::SourceDeleted);
    download_killed_once_claimed: download_drill(CrashPoint::Claimed);
    download_killed_mid_stream: download_drill(CrashPoint::MidStream);
    download_killed_once_fsynced: download_drill(CrashPoint::Staged);
    download_killed_between_intent_and_rename: download_drill(CrashPoint::IntentWritten);
    download_killed_between_rename_and_record: download_drill(CrashPoint::Renamed);
    download_killed_after_the_record: download_drill(CrashPoint::Recorded);
    download_killed_after_deleting_the_remote_file: download_drill(CrashPoint::SourceDeleted);
}
