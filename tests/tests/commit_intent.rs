//! The commit protocol (`idempotency/intent.rs`) and the download identity rule, against the
//! real Redis and vsftpd: an intent is written only under a held claim, a later claim gets
//! it back, the record removes it; and a download flow that deletes remote files never
//! deletes one it has not fetched and compared in this run, however its listing looks.
//!
//! The store-level test runs on Redis and on the embedded store (`redis::` and `embedded::`,
//! see `ferry_tests::on_both_stores!`); the download tests run the engine on Redis.

use std::time::{Duration, SystemTime};

use ferry_shared::idempotency::keys::FlowKeys;
use ferry_shared::idempotency::{ClaimOutcome, CommitIntent, CommitStart, DeliveryKey, Recorded};
use ferry_shared::transfer::Outcome;
use ferry_tests::bed::{Bed, download, files_in, options, run, sha256_hex};
use ferry_tests::ftp::FtpServerKind;
use ferry_tests::store_target::{Target, TestStore};

fn intent() -> CommitIntent {
    CommitIntent {
        temp_path: "/in/.a.xml.0123456789ab.ferry-part".into(),
        final_path: "/in/a.xml".into(),
        size: 42,
        sha256: "ab".repeat(32),
        flow_run_id: "run-1".into(),
        written_at: chrono::Utc::now(),
    }
}

async fn an_intent_is_written_only_under_a_held_claim_and_the_record_removes_it(target: Target) {
    let prefix = TestStore::new(target, "intent-store");
    let store = prefix.store().await;
    let key = DeliveryKey::content("f", &[7; 32]);
    let intent_key = FlowKeys::new(&prefix.prefix, "f").intent(&key);
    let short = Duration::from_millis(300);
    let ClaimOutcome::Claimed(first) = store.claim(&key, "worker-a", short).await.unwrap() else {
        panic!("a fresh key is claimed");
    };
    let written = intent();
    let start = store.begin_commit(&first, &written, Duration::from_secs(60));
    assert_eq!(start.await.unwrap(), CommitStart::ClaimHeld);

    // worker-a stalls past its lease: worker-b gets the key back with a-'s intent.
    tokio::time::sleep(short * 2).await;
    let second = match store.claim(&key, "worker-b", Duration::from_secs(60)).await {
        Ok(ClaimOutcome::Unfinished { claim, intent }) => {
            assert_eq!(intent, written.clone());
            claim
        }
        other => panic!("expected the unfinished commit, got {other:?}"),
    };
    // worker-a wakes up: its claim is gone, so it may not rename (nor overwrite the intent).
    let other = intent();
    let late = store.begin_commit(&first, &other, Duration::from_secs(60));
    assert_eq!(late.await.unwrap(), CommitStart::ClaimLost);
    let stored: Option<CommitIntent> = prefix
        .get(&intent_key)
        .map(|json| serde_json::from_str(&json).expect("intent JSON"));
    assert_eq!(stored, Some(written), "the first intent stays");

    let record = ferry_shared::idempotency::DeliveryRecord {
        file_name: "a.xml".into(),
        size: 42,
        sha256: "ab".repeat(32),
        remote_path: "/in/a.xml".into(),
        delivered_at: chrono::Utc::now(),
        flow_run_id: "run-2".into(),
        trace_id: None,
        direction: "upload".into(),
    };
    let recorded = store.record_delivery(&second, &record, Duration::from_secs(60));
    assert_eq!(recorded.await.unwrap(), Recorded::ClaimHeld);
    assert_eq!(
        prefix.get(&intent_key),
        None,
        "the record removes the intent"
    );
    assert!(matches!(
        store.claim(&key, "worker-c", short).await.unwrap(),
        ClaimOutcome::AlreadyDelivered(_)
    ));
}

/// Gives `path` the modification time `time` (as a partner's software would keep it).
fn set_mtime(path: &std::path::Path, time: SystemTime) {
    let file = std::fs::File::options()
        .write(true)
        .open(path)
        .expect("open");
    file.set_modified(time).expect("set mtime");
}

/// vsftpd lists times to the minute: a file is taken only once its listed minute and the
/// stability age have passed, so no later replacement can share its (name, size, listed
/// time) identity.
#[tokio::test]
async fn a_file_listed_to_the_minute_waits_for_the_end_of_its_minute() {
    let bed = Bed::start("minute-stability", FtpServerKind::Vsftpd).await;
    let remote = bed.server.path("out/a.xml");
    std::fs::write(&remote, b"<a/>").expect("remote");
    // Seconds within the current minute: with a 1 s stability age an exact time would be
    // stable already, a listed minute is not.
    let now = SystemTime::now();
    let into_minute = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        % 60;
    if !(3..=55).contains(&into_minute) {
        tokio::time::sleep(Duration::from_secs(6)).await;
    }
    set_mtime(&remote, SystemTime::now() - Duration::from_secs(2));
    bed.config(&download(""), None);
    let flows = bed.dir.path().join("flows/f.yaml");
    let text = std::fs::read_to_string(&flows).expect("flow");
    std::fs::write(&flows, text.replace("min_file_age: 0s", "min_file_age: 1s")).expect("flow");
    let config = ferry_shared::config::Config::load(bed.dir.path()).expect("config");
    let engine = bed.engine(std::sync::Arc::new(config), options("w1")).await;

    let early = run(&engine, "run-1").await;
    assert_eq!(early.not_yet_stable, ["a.xml"], "{early:#?}");
    assert!(files_in(&bed.local()).is_empty());

    set_mtime(&remote, SystemTime::now() - Duration::from_secs(120));
    let later = run(&engine, "run-2").await;
    assert_eq!(later.totals.transferred, 1, "{later:#?}");
}

/// A download flow first fetches `a.xml` without deleting it; then the partner replaces it
/// with bytes of the same size under the same time (or leaves it), and the flow is set to
/// delete what it fetched (`extra`). Returns the bed after that second run, and its row.
async fn replaced_under_the_same_listing(
    test: &str,
    replace: bool,
    extra: &str,
) -> (Bed, ferry_shared::transfer::FileReport) {
    let bed = Bed::start(test, FtpServerKind::Vsftpd).await;
    let remote = bed.server.path("out/a.xml");
    std::fs::write(&remote, b"<v1>first</v1>").expect("remote");
    let listed = SystemTime::now() - Duration::from_secs(3600);
    set_mtime(&remote, listed);
    let first = run(&bed.engine_for(&download("")).await, "run-1").await;
    assert_eq!(first.totals.transferred, 1, "{first:#?}");

    if replace {
        std::fs::write(&remote, b"<v2>other</v2>").expect("replace");
        set_mtime(&remote, listed);
    }
    let flow = format!("    delete_after_download: true\n{extra}");
    let second = run(&bed.engine_for(&download(&flow)).await, "run-2").await;
    let row = second.files.into_iter().next().expect("a row");
    (bed, row)
}

#[tokio::test]
async fn a_recorded_remote_file_is_deleted_only_after_it_was_fetched_again_and_matched() {
    let (bed, row) =
        replaced_under_the_same_listing("recheck-same", false, "    overwrite: true\n").await;

    assert_eq!(row.outcome, Outcome::Duplicate, "{row:?}");
    assert!(
        !bed.server.path("out/a.xml").exists(),
        "the fetched, matching file is deleted"
    );
    assert_eq!(
        files_in(&bed.local())["a.xml"],
        sha256_hex(b"<v1>first</v1>")
    );
}

#[tokio::test]
async fn a_file_replaced_under_the_same_name_size_and_time_is_fetched_not_deleted_unseen() {
    let (bed, row) =
        replaced_under_the_same_listing("recheck-new", true, "    overwrite: true\n").await;

    assert_eq!(row.outcome, Outcome::Transferred, "{row:?}");
    assert_eq!(
        files_in(&bed.local())["a.xml"],
        sha256_hex(b"<v2>other</v2>"),
        "the new content arrived"
    );
    assert!(
        !bed.server.path("out/a.xml").exists(),
        "deleted once fetched"
    );

    // Without overwrite, the new content cannot take the old file's place: it stays on the
    // partner (never deleted unfetched), and the local file stays as it was.
    let (bed, row) = replaced_under_the_same_listing("recheck-kept", true, "").await;
    assert_eq!(row.outcome, Outcome::Failed, "{row:?}");
    assert_eq!(row.error.expect("error").kind, "target_exists");
    assert_eq!(
        std::fs::read(bed.server.path("out/a.xml")).expect("still on the partner"),
        b"<v2>other</v2>"
    );
    assert_eq!(
        files_in(&bed.local())["a.xml"],
        sha256_hex(b"<v1>first</v1>")
    );
}

ferry_tests::on_both_stores!(
    an_intent_is_written_only_under_a_held_claim_and_the_record_removes_it
);
