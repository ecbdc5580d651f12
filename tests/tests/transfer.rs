//! The flow-run engine end to end: real FTPS servers from the test bed, the real Redis at
//! 127.0.0.1:6379 (or `FERRY_TEST_REDIS_URL`), configuration written to a temporary
//! directory and loaded with `Config::load`.
//!
//! Each test checks what an operator would: the bytes and hashes on the partner's disk,
//! the delivery records in Redis, the files left (or not) in the local directory, and the
//! rows of the run report. Every test writes under its own Redis key prefix, deleted when
//! it ends, so the tests run in parallel.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use ferry_shared::config::Config;
use ferry_shared::idempotency::{ClaimOutcome, DeliveryKey, LockWait, Unlocked};
use ferry_shared::transfer::{Engine, FileReport, Outcome, TransferErrorKind, run_flow};
use ferry_tests::bed::{
    Bed, all_names, download, files_in, names_with, options, parse_run, redis_url, run, sha256_hex,
    upload, write_files,
};
use ferry_tests::ftp::FtpServerKind;

#[tokio::test]
async fn uploads_each_content_once_and_skips_duplicates() {
    let bed = Bed::start("dup", FtpServerKind::Vsftpd).await;
    let engine = bed
        .engine_for(&upload("    idempotency_mode: content\n"))
        .await;
    let sent = write_files(&bed.local(), 50, 4096);

    let seen = std::sync::Mutex::new(0usize);
    let progress = |_: &FileReport| *seen.lock().expect("lock") += 1;
    let first = run_flow(&engine, "f", None, "run-1", Some(&progress))
        .await
        .expect("first run");
    assert_eq!(first.totals.transferred, 50, "{first:#?}");
    assert!(first.is_success());
    assert_eq!(*seen.lock().expect("lock"), 50, "progress called per file");
    assert_eq!(first.totals.bytes, 50 * 4096);
    assert_eq!(
        bed.remote_files("in"),
        sent,
        "the partner has every file, intact"
    );
    // The records in Redis: one per content, pointing at the remote file and this run.
    for (name, sha) in &sent {
        let digest: [u8; 32] = hex::decode(sha).expect("hex").try_into().expect("32");
        let record = engine
            .store()
            .delivery(&DeliveryKey::content("f", &digest))
            .await
            .expect("redis")
            .unwrap_or_else(|| panic!("no delivery record for {name}"));
        assert_eq!(record.remote_path, format!("/in/{name}"));
        assert_eq!(record.flow_run_id, "run-1");
        assert_eq!(&record.sha256, sha);
        assert_eq!(record.size, 4096);
    }

    let second = run(&engine, "run-2").await;
    assert_eq!(
        second.totals.skipped_duplicates,
        50,
        "{}",
        second.summary_line()
    );
    assert_eq!(second.totals.transferred, 0);
    assert!(second.is_success());

    // A copy under a new name has the same content: a duplicate, not sent.
    std::fs::copy(bed.local().join("f000.xml"), bed.local().join("copy.xml")).expect("copy");
    let third = run(&engine, "run-3").await;
    let copy = third
        .files
        .iter()
        .find(|r| r.name == "copy.xml")
        .expect("row");
    assert_eq!(copy.outcome, Outcome::Duplicate);
    assert_eq!(copy.remote_path.as_deref(), Some("/in/f000.xml"));
    assert!(!bed.server.path("in/copy.xml").exists());

    // One byte changed: new content, sent again.
    let path = bed.local().join("f001.xml");
    let mut bytes = std::fs::read(&path).expect("read");
    bytes[0] ^= 0xff;
    std::fs::write(&path, &bytes).expect("write");
    let fourth = run(&engine, "run-4").await;
    assert_eq!(names_with(&fourth, Outcome::Transferred), ["f001.xml"]);
    assert_eq!(fourth.totals.skipped_duplicates, 50);
    assert_eq!(bed.remote_files("in")["f001.xml"], sha256_hex(&bytes));

    let json = serde_json::to_value(&fourth).expect("json");
    assert_eq!(json["totals"]["transferred"], 1);
    assert_eq!(json["files"][0]["outcome"], "duplicate");
}

#[tokio::test]
async fn two_engines_on_one_flow_deliver_each_file_exactly_once() {
    let bed = Bed::start("two", FtpServerKind::Vsftpd).await;
    let config = bed.config(&upload("    delete_after_upload: true\n"), None);
    let sent = write_files(&bed.local(), 200, 2048);
    let a = bed.engine(config.clone(), options("worker-a")).await;
    let b = bed.engine(config, options("worker-b")).await;

    let (ra, rb) = tokio::join!(run(&a, "run-a"), run(&b, "run-b"));

    assert_eq!(ra.totals.failed + rb.totals.failed, 0, "{ra:#?}\n{rb:#?}");
    assert_eq!(
        ra.totals.transferred + rb.totals.transferred,
        200,
        "{}\n{}",
        ra.summary_line(),
        rb.summary_line()
    );
    assert_eq!(
        bed.remote_files("in"),
        sent,
        "every file arrived once, intact"
    );
    assert!(
        all_names(&bed.local()).is_empty(),
        "every source was deleted"
    );
}

#[tokio::test]
async fn an_unreachable_partner_leaves_files_in_place_until_the_next_run() {
    let bed = Bed::start("down", FtpServerKind::PureFtpd).await;
    let sent = write_files(&bed.local(), 5, 1000);
    let closed_port = ferry_tests::ports::free_port();
    let down = bed.config(
        &upload("    delete_after_upload: true\n"),
        Some(closed_port),
    );
    let engine = bed.engine(down, options("w1")).await;

    let failed = run(&engine, "run-down").await;
    assert_eq!(failed.totals.failed, 5, "{failed:#?}");
    assert!(!failed.is_success());
    for row in &failed.files {
        let error = row.error.as_ref().expect("error");
        assert_eq!(error.kind, "connection_refused", "{row:?}");
        assert_eq!(row.attempts, 3, "transient errors are retried: {row:?}");
    }
    assert_eq!(files_in(&bed.local()), sent, "files stay where they were");
    assert!(bed.remote_files("in").is_empty());

    // The partner is back: the next run delivers everything.
    let up = bed.config(&upload("    delete_after_upload: true\n"), None);
    let engine = bed.engine(up, options("w1")).await;
    let next = run(&engine, "run-up").await;
    assert_eq!(next.totals.transferred, 5, "{next:#?}");
    assert_eq!(bed.remote_files("in"), sent);
    assert!(all_names(&bed.local()).is_empty());
}

#[tokio::test]
async fn without_redis_nothing_moves() {
    let bed = Bed::start("noredis", FtpServerKind::Vsftpd).await;
    write_files(&bed.local(), 3, 100);
    let config = bed.config(&upload(""), None);
    let dead_redis = format!("redis://127.0.0.1:{}", ferry_tests::ports::free_port());
    let text = std::fs::read_to_string(bed.dir.path().join("ferry.yaml")).expect("read");
    std::fs::write(
        bed.dir.path().join("ferry.yaml"),
        text.replace(&redis_url(), &dead_redis),
    )
    .expect("write");
    drop(config);
    let config = Arc::new(Config::load(bed.dir.path()).expect("config"));

    let err = Engine::connect(config, options("w1"))
        .await
        .expect_err("no engine without Redis");
    assert_eq!(err.kind(), TransferErrorKind::StoreUnavailable, "{err}");
    assert!(err.to_string().contains("idempotency store"), "{err}");
    assert!(bed.remote_files("in").is_empty());
    assert_eq!(files_in(&bed.local()).len(), 3);
}

#[tokio::test]
async fn a_flow_held_by_another_run_is_reported_busy() {
    let bed = Bed::start("busy", FtpServerKind::Vsftpd).await;
    write_files(&bed.local(), 1, 100);
    let mut opts = options("w1");
    opts.flow_lock_wait = Duration::from_millis(300);
    let engine = bed.engine(bed.config(&upload(""), None), opts).await;
    let held = match engine
        .store()
        .flow_locks()
        .wait("f", "other-worker", Duration::from_secs(30), Duration::ZERO)
        .await
        .expect("redis")
    {
        LockWait::Acquired(lock) => lock,
        LockWait::Busy { .. } => panic!("the flow lock should be free"),
    };

    let err = run_flow(&engine, "f", None, "run-busy", None)
        .await
        .expect_err("busy");
    assert_eq!(err.kind(), TransferErrorKind::FlowBusy, "{err}");
    assert!(err.to_string().contains("other-worker"), "{err}");
    assert!(bed.remote_files("in").is_empty());

    let released = engine
        .store()
        .flow_locks()
        .unlock(held)
        .await
        .expect("unlock");
    assert_eq!(released, Unlocked::Released);
    let report = run(&engine, "run-after").await;
    assert_eq!(report.totals.transferred, 1);
}

/// Makes a file immutable (`chattr +i`), which even root cannot delete; undone on drop.
struct Immutable(PathBuf);

impl Immutable {
    fn set(path: PathBuf) -> Immutable {
        let status = Command::new("chattr")
            .arg("+i")
            .arg(&path)
            .status()
            .expect("running chattr (e2fsprogs)");
        assert!(status.success(), "chattr +i {} failed", path.display());
        Immutable(path)
    }
}

impl Drop for Immutable {
    fn drop(&mut self) {
        let _ = Command::new("chattr").arg("-i").arg(&self.0).status();
    }
}

#[tokio::test]
async fn a_local_delete_that_fails_is_reported() {
    let bed = Bed::start("nodelete", FtpServerKind::Vsftpd).await;
    let sent = write_files(&bed.local(), 2, 100);
    let _stuck = Immutable::set(bed.local().join("f000.xml"));
    let engine = bed
        .engine_for(&upload("    delete_after_upload: true\n"))
        .await;

    let report = run(&engine, "run-1").await;
    assert!(!report.is_success(), "a failed delete makes the run fail");
    let stuck = &report.files[0];
    assert_eq!(stuck.name, "f000.xml");
    assert_eq!(stuck.outcome, Outcome::Failed);
    let error = stuck.error.as_ref().expect("error");
    assert_eq!(error.kind, "delete_source_failed");
    assert!(error.message.contains("could not be deleted"), "{error:?}");
    assert_eq!(stuck.remote_path.as_deref(), Some("/in/f000.xml"));
    assert_eq!(report.files[1].outcome, Outcome::Transferred);
    // Delivered all the same, and recorded: the next run sees a duplicate.
    assert_eq!(bed.remote_files("in"), sent);
    assert_eq!(all_names(&bed.local()), ["f000.xml"]);
}

#[tokio::test]
async fn a_crash_mid_upload_is_finished_by_the_next_run_exactly_once() {
    let bed = Bed::start("crash", FtpServerKind::Vsftpd).await;
    let big = bed.local().join("big.xml");
    {
        use std::io::Write;
        let mut file = std::fs::File::create(&big).expect("create");
        let chunk: Vec<u8> = (0..1024 * 1024).map(|_| rand::random::<u8>()).collect();
        for _ in 0..200 {
            file.write_all(&chunk).expect("write");
        }
    }
    let expected = files_in(&bed.local());
    let config = bed.config(&upload("    delete_after_upload: true\n"), None);
    let mut opts = options("crasher");
    opts.claim_lease = Duration::from_secs(3);
    opts.flow_lock_lease = Duration::from_secs(3);
    let crasher = Arc::new(bed.engine(config.clone(), opts.clone()).await);

    // Start the upload and kill it once part of the file is on the partner's disk.
    let task = {
        let crasher = crasher.clone();
        tokio::spawn(async move { run(&crasher, "run-crash").await })
    };
    let partial = loop {
        let temp = std::fs::read_dir(bed.server.path("in"))
            .expect("read")
            .filter_map(Result::ok)
            .find(|e| e.metadata().map(|m| m.len() > 1024 * 1024).unwrap_or(false));
        if let Some(temp) = temp {
            break temp.file_name().to_string_lossy().into_owned();
        }
        assert!(
            !task.is_finished(),
            "the upload finished before it could be killed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    task.abort();
    let _ = task.await;
    assert!(
        partial.starts_with('.'),
        "partial data only under a hidden name: {partial}"
    );
    assert!(
        !bed.server.path("in/big.xml").exists(),
        "no partial file under the final name"
    );
    assert!(
        big.exists(),
        "the source is kept until the delivery is recorded"
    );

    // The next run (another worker) waits out the dead run's leases and delivers the file.
    opts.worker_id = "rescuer".into();
    let rescuer = bed.engine(config, opts).await;
    let report = loop {
        let report = run(&rescuer, "run-rescue").await;
        if report.totals.left_to_other_workers == 0 {
            break report;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    assert_eq!(
        names_with(&report, Outcome::Transferred),
        ["big.xml"],
        "{report:#?}"
    );
    assert_eq!(bed.remote_files("in"), expected, "whole, once");
    assert!(!big.exists(), "deleted after delivery");
    let again = run(&rescuer, "run-again").await;
    assert!(again.files.is_empty(), "{again:#?}");
}

#[tokio::test]
async fn downloads_each_file_once_across_engines_and_recognises_known_content() {
    let bed = Bed::start("down", FtpServerKind::Proftpd).await;
    let mut offered = BTreeMap::new();
    for i in 0..30 {
        let name = format!("d{i:02}.xml");
        let bytes: Vec<u8> = (0..3000).map(|_| rand::random::<u8>()).collect();
        bed.server
            .write_file(&format!("out/{name}"), &bytes)
            .expect("remote");
        offered.insert(name, sha256_hex(&bytes));
    }
    let config = bed.config(&download("    idempotency_mode: content\n"), None);
    let a = bed.engine(config.clone(), options("worker-a")).await;
    let b = bed.engine(config, options("worker-b")).await;

    let (ra, rb) = tokio::join!(run(&a, "run-a"), run(&b, "run-b"));
    assert_eq!(ra.totals.failed + rb.totals.failed, 0, "{ra:#?}\n{rb:#?}");
    assert_eq!(ra.totals.transferred + rb.totals.transferred, 30);
    assert_eq!(
        files_in(&bed.local()),
        offered,
        "every file fetched, intact"
    );
    assert_eq!(all_names(&bed.local()).len(), 30, "no temporary file left");
    assert_eq!(bed.remote_files("out"), offered, "no delete unless asked");

    // Nothing new: everything is a duplicate.
    let again = run(&a, "run-again").await;
    assert_eq!(
        again.totals.skipped_duplicates,
        30,
        "{}",
        again.summary_line()
    );

    // Known content under a new name: fetched, recognised, discarded.
    let copy = std::fs::read(bed.server.path("out/d00.xml")).expect("read");
    bed.server.write_file("out/copy.xml", &copy).expect("copy");
    let third = run(&a, "run-3").await;
    let row = third
        .files
        .iter()
        .find(|r| r.name == "copy.xml")
        .expect("row");
    assert_eq!(row.outcome, Outcome::Duplicate, "{row:?}");
    assert_eq!(row.remote_path.as_deref(), Some("/out/copy.xml"));
    assert_eq!(
        row.local_path.as_deref(),
        Some(bed.local().join("d00.xml").to_str().expect("utf-8")),
        "the row names where the same content was delivered before"
    );
    assert!(!bed.local().join("copy.xml").exists());
    assert_eq!(
        all_names(&bed.local()).len(),
        30,
        "the temporary copy was discarded"
    );
}

#[tokio::test]
async fn downloads_delete_the_remote_file_only_after_it_is_in_place() {
    let bed = Bed::start("downdel", FtpServerKind::Vsftpd).await;
    let mut offered = BTreeMap::new();
    for i in 0..10 {
        let name = format!("d{i:02}.xml");
        let bytes = format!("statement {i}").into_bytes();
        bed.server
            .write_file(&format!("out/{name}"), &bytes)
            .expect("remote");
        offered.insert(name, sha256_hex(&bytes));
    }
    bed.server
        .write_file("out/skip.txt", b"not selected")
        .expect("remote");
    let config = bed.config(&download("    delete_after_download: true\n"), None);
    let engine = bed.engine(config, options("w1")).await;

    let report = run(&engine, "run-1").await;
    assert_eq!(report.totals.transferred, 10, "{report:#?}");
    assert_eq!(files_in(&bed.local()), offered);
    assert_eq!(all_names(&bed.server.path("out")), ["skip.txt"]);
    for (name, sha) in &offered {
        let digest: [u8; 32] = hex::decode(sha).expect("hex").try_into().expect("32");
        let record = engine
            .store()
            .delivery(&DeliveryKey::content("f", &digest))
            .await
            .expect("redis")
            .unwrap_or_else(|| panic!("no record for {name}"));
        assert_eq!(record.direction, "download");
        assert_eq!(record.file_name, *name);
    }
}

#[tokio::test]
async fn a_file_claimed_by_another_worker_is_left_to_it() {
    let bed = Bed::start("claimed", FtpServerKind::PureFtpd).await;
    let sent = write_files(&bed.local(), 3, 500);
    let engine = bed.engine_for(&upload("")).await;
    let (name, sha) = sent.iter().next().expect("a file");
    let digest: [u8; 32] = hex::decode(sha).expect("hex").try_into().expect("32");
    let key = DeliveryKey::named_content("f", name, &digest);
    let claim = match engine
        .store()
        .claim(&key, "other-worker", Duration::from_secs(60))
        .await
        .expect("redis")
    {
        ClaimOutcome::Claimed(claim) => claim,
        other => panic!("expected a fresh claim, got {other:?}"),
    };

    let report = run(&engine, "run-1").await;
    assert_eq!(
        names_with(&report, Outcome::LeftToOtherWorker),
        [name.as_str()]
    );
    assert_eq!(report.totals.transferred, 2);
    assert!(
        report.is_success(),
        "a file left to its owner is not a failure"
    );
    assert!(!bed.server.path(&format!("in/{name}")).exists());
    let row = report.files.iter().find(|r| &r.name == name).expect("row");
    let holder = row.holder.as_ref().expect("the row names the holder");
    assert_eq!(holder.owner, claim.owner());
    let left = holder.expires_in_ms.expect("the claim's time left");
    assert!(left > 0 && left <= 60_000, "{left}");

    // `ferry-worker run` says so too, and does not exit 0: the file is not done.
    let output = bed.worker_run().output().await.expect("run");
    let (code, json) = parse_run(&output);
    assert_eq!(code, Some(3), "{json}");
    let rows = json["files"].as_array().expect("rows");
    let held = rows
        .iter()
        .find(|r| r["name"] == name.as_str())
        .expect("row");
    assert_eq!(held["holder"]["owner"], claim.owner());

    // The other worker gives up: the next run sends the file.
    engine.store().release(claim).await.expect("release");
    let next = run(&engine, "run-2").await;
    assert_eq!(names_with(&next, Outcome::Transferred), [name.as_str()]);
    assert_eq!(bed.remote_files("in"), sent);
}

#[tokio::test]
async fn a_run_out_of_time_stops_cleanly() {
    let bed = Bed::start("timeout", FtpServerKind::Vsftpd).await;
    let sent = write_files(&bed.local(), 3, 500);
    let flow = upload("    delete_after_upload: true\n    run_timeout: 1ms\n");
    let engine = bed.engine_for(&flow).await;

    let report = run(&engine, "run-1").await;
    assert!(report.timed_out, "{report:#?}");
    assert_eq!(report.totals.failed, 3);
    for row in &report.files {
        assert_eq!(row.error.as_ref().expect("error").kind, "run_timeout");
    }
    assert_eq!(files_in(&bed.local()), sent, "every file stays in place");
    assert!(bed.remote_files("in").is_empty());

    let flow = upload("    delete_after_upload: true\n");
    let engine = bed.engine_for(&flow).await;
    let next = run(&engine, "run-2").await;
    assert_eq!(
        next.totals.transferred, 3,
        "nothing was recorded or left claimed"
    );
}

#[tokio::test]
async fn name_mode_and_none_mode() {
    let bed = Bed::start("modes", FtpServerKind::Vsftpd).await;
    let path = bed.local().join("a.xml");
    std::fs::write(&path, b"version 1").expect("write");

    let by_name = bed.config(&upload("    idempotency_mode: name\n"), None);
    let engine = bed.engine(by_name, options("w1")).await;
    assert_eq!(run(&engine, "n1").await.totals.transferred, 1);
    assert_eq!(run(&engine, "n2").await.totals.skipped_duplicates, 1);
    // Same name and size, new modification time: a new file.
    let earlier = std::time::SystemTime::now() - Duration::from_secs(3600);
    std::fs::File::options()
        .write(true)
        .open(&path)
        .and_then(|f| f.set_modified(earlier))
        .expect("touch");
    let report = run(&engine, "n3").await;
    assert_eq!(report.totals.transferred, 1, "{report:#?}");

    let none = bed.config(&upload("    idempotency_mode: none\n"), None);
    let engine = bed.engine(none, options("w1")).await;
    assert_eq!(run(&engine, "x1").await.totals.transferred, 1);
    assert_eq!(
        run(&engine, "x2").await.totals.transferred,
        1,
        "no memory: sent again"
    );
    assert_eq!(bed.remote_files("in")["a.xml"], sha256_hex(b"version 1"));
}

/// `ferry-worker --config DIR run --flow f --json`, output captured.
/// Waits until a file in `dir` passes 1 MiB (a transfer under way), then kills `victim`
/// with SIGKILL; returns that file's name. Panics if the transfer ends first.
async fn kill_mid_transfer(victim: &mut tokio::process::Child, dir: &Path) -> String {
    let partial = loop {
        let temp = std::fs::read_dir(dir)
            .expect("read")
            .filter_map(Result::ok)
            .find(|e| e.metadata().map(|m| m.len() > 1024 * 1024).unwrap_or(false));
        if let Some(temp) = temp {
            break temp.file_name().to_string_lossy().into_owned();
        }
        assert!(
            victim.try_wait().expect("poll").is_none(),
            "the transfer finished before it could be killed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    victim.start_kill().expect("SIGKILL");
    victim.wait().await.expect("reap");
    partial
}

/// Runs `ferry-worker run` (a few times, a second apart, while the dead run's flow lock
/// and claim expire) until one run transfers one file; whether one did.
async fn run_until_one_transferred(bed: &Bed) -> bool {
    for _ in 0..6 {
        let output = bed.worker_run().output().await.expect("run");
        let (code, report) = parse_run(&output);
        if code == Some(0) && report["totals"]["transferred"] == 1 {
            return true;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    false
}

/// Starts two `ferry-worker run` processes on the flow at once; both must succeed.
/// Returns how many files they transferred between them.
async fn two_runs_at_once(bed: &Bed) -> u64 {
    let (a, b) = tokio::join!(bed.worker_run().output(), bed.worker_run().output());
    let (code_a, report_a) = parse_run(&a.expect("worker a"));
    let (code_b, report_b) = parse_run(&b.expect("worker b"));
    // 3: a file was still held by the other process's claim when this one looked at it.
    for code in [code_a, code_b] {
        assert!(
            matches!(code, Some(0) | Some(3)),
            "{code:?}\n{report_a}\n{report_b}"
        );
    }
    let transferred = |r: &serde_json::Value| r["totals"]["transferred"].as_u64().expect("count");
    transferred(&report_a) + transferred(&report_b)
}

#[tokio::test]
async fn two_worker_processes_on_one_flow_deliver_each_file_exactly_once() {
    let bed = Bed::start("procs", FtpServerKind::Vsftpd).await;
    bed.config(&upload("    delete_after_upload: true\n"), None);
    let sent = write_files(&bed.local(), 200, 2048);

    assert_eq!(
        two_runs_at_once(&bed).await,
        200,
        "between them, every file once"
    );
    assert_eq!(
        bed.remote_files("in"),
        sent,
        "every file arrived once, intact"
    );
    assert!(all_names(&bed.local()).is_empty(), "none left behind");
}

#[tokio::test]
async fn kill_9_mid_upload_then_a_new_process_delivers_the_file_once() {
    let bed = Bed::start("kill9", FtpServerKind::Vsftpd).await;
    bed.config(&upload("    delete_after_upload: true\n"), None);
    let big = bed.local().join("big.xml");
    {
        use std::io::Write;
        let mut file = std::fs::File::create(&big).expect("create");
        let chunk: Vec<u8> = (0..1024 * 1024).map(|_| rand::random::<u8>()).collect();
        for _ in 0..200 {
            file.write_all(&chunk).expect("write");
        }
    }
    let expected = files_in(&bed.local());

    let mut victim = bed.worker_run().spawn().expect("spawn ferry-worker");
    let partial = kill_mid_transfer(&mut victim, &bed.server.path("in")).await;
    assert!(
        partial.starts_with('.'),
        "partial data only under a hidden name: {partial}"
    );
    assert!(
        !bed.server.path("in/big.xml").exists(),
        "no partial file under the final name"
    );
    assert!(
        big.exists(),
        "the source stays until the delivery is recorded"
    );

    // New processes: the dead one's flow lock and claim expire, then the file goes.
    assert!(
        run_until_one_transferred(&bed).await,
        "no run delivered the file"
    );
    assert_eq!(
        bed.remote_files("in"),
        expected,
        "arrived whole, exactly once"
    );
    assert!(!big.exists(), "deleted after delivery");
    let output = bed.worker_run().output().await.expect("run");
    let (code, report) = parse_run(&output);
    assert_eq!(code, Some(0));
    assert_eq!(
        report["files"].as_array().map(Vec::len),
        Some(0),
        "{report}"
    );
}

#[tokio::test]
async fn a_file_changed_during_its_upload_fails_and_stays() {
    let bed = Bed::start("changed", FtpServerKind::Vsftpd).await;
    let big = bed.local().join("big.xml");
    let chunk: Vec<u8> = (0..1024 * 1024).map(|_| rand::random::<u8>()).collect();
    {
        use std::io::Write;
        let mut file = std::fs::File::create(&big).expect("create");
        for _ in 0..200 {
            file.write_all(&chunk).expect("write");
        }
    }
    let flow = upload("    delete_after_upload: true\n");
    let engine = Arc::new(bed.engine_for(&flow).await);
    let original = files_in(&bed.local())["big.xml"].clone();

    let task = {
        let engine = engine.clone();
        tokio::spawn(async move { run(&engine, "run-1").await })
    };
    // Once the upload is under way, the producer rewrites the file's last byte.
    loop {
        let started = std::fs::read_dir(bed.server.path("in"))
            .expect("read")
            .filter_map(Result::ok)
            .any(|e| e.metadata().map(|m| m.len() > 1024 * 1024).unwrap_or(false));
        if started {
            break;
        }
        assert!(
            !task.is_finished(),
            "the upload finished before the file could change"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    {
        use std::io::{Seek, SeekFrom, Write};
        let mut file = std::fs::File::options()
            .write(true)
            .open(&big)
            .expect("open");
        file.seek(SeekFrom::End(-1)).expect("seek");
        file.write_all(&[chunk[chunk.len() - 1] ^ 0xff])
            .expect("write");
    }
    let report = task.await.expect("run task");

    let row = &report.files[0];
    assert_eq!(row.outcome, Outcome::Failed, "{row:?}");
    assert_eq!(
        row.error.as_ref().expect("error").kind,
        "local_file_changed"
    );
    assert!(big.exists(), "the changed file stays in place");
    assert!(
        !bed.server.path("in/big.xml").exists(),
        "nothing under the final name"
    );
    let digest: [u8; 32] = hex::decode(&original).expect("hex").try_into().expect("32");
    let record = engine
        .store()
        .delivery(&DeliveryKey::content("f", &digest))
        .await
        .expect("redis");
    assert!(record.is_none(), "no delivery record for a failed file");

    // The next run sends the file as it is now.
    let now = files_in(&bed.local());
    let next = run(&engine, "run-2").await;
    assert_eq!(next.totals.transferred, 1, "{next:#?}");
    assert_eq!(bed.remote_files("in"), now);
}

#[tokio::test]
async fn copies_in_one_run_are_one_transfer_and_duplicates() {
    let bed = Bed::start("copies", FtpServerKind::Vsftpd).await;
    let engine = bed
        .engine_for(&upload("    idempotency_mode: content\n"))
        .await;
    let content = vec![7u8; 512 * 1024];
    for name in ["a.xml", "b.xml", "c.xml"] {
        std::fs::write(bed.local().join(name), &content).expect("write");
    }
    let report = run(&engine, "run-copies").await;
    assert!(report.is_success(), "{report:#?}");
    assert_eq!(report.totals.transferred, 1, "{report:#?}");
    assert_eq!(report.totals.skipped_duplicates, 2, "{report:#?}");
    assert_eq!(report.totals.left_to_other_workers, 0, "{report:#?}");
    assert_eq!(
        bed.remote_files("in").len(),
        1,
        "one copy reached the partner"
    );
}

#[tokio::test]
async fn two_worker_processes_download_each_file_exactly_once() {
    let bed = Bed::start("procs-down", FtpServerKind::Vsftpd).await;
    bed.config(&download("    delete_after_download: true\n"), None);
    let mut offered = BTreeMap::new();
    for i in 0..200 {
        let name = format!("d{i:03}.xml");
        let bytes: Vec<u8> = (0..2048).map(|_| rand::random::<u8>()).collect();
        bed.server
            .write_file(&format!("out/{name}"), &bytes)
            .expect("remote");
        offered.insert(name, sha256_hex(&bytes));
    }

    assert_eq!(
        two_runs_at_once(&bed).await,
        200,
        "between them, every file once"
    );
    assert_eq!(
        files_in(&bed.local()),
        offered,
        "every file fetched once, intact"
    );
    assert_eq!(all_names(&bed.local()).len(), 200, "no temporary file left");
    assert!(
        bed.remote_files("out").is_empty(),
        "each remote file deleted after it was in place"
    );
}

#[tokio::test]
async fn kill_9_mid_download_then_a_new_process_fetches_the_file_once() {
    let bed = Bed::start("kill9-down", FtpServerKind::Vsftpd).await;
    bed.config(&download("    delete_after_download: true\n"), None);
    let chunk: Vec<u8> = (0..1024 * 1024).map(|_| rand::random::<u8>()).collect();
    let big: Vec<u8> = chunk.repeat(200);
    bed.server.write_file("out/big.xml", &big).expect("remote");
    let expected = sha256_hex(&big);
    drop(big);

    let mut victim = bed.worker_run().spawn().expect("spawn ferry-worker");
    let partial = kill_mid_transfer(&mut victim, &bed.local()).await;
    assert!(
        partial.starts_with('.'),
        "partial data only under a hidden name: {partial}"
    );
    assert!(
        !bed.local().join("big.xml").exists(),
        "no partial file under the final name"
    );
    assert!(
        bed.server.path("out/big.xml").exists(),
        "the remote file stays until recorded"
    );

    // New processes: the dead one's flow lock and claim expire, then the file comes.
    assert!(
        run_until_one_transferred(&bed).await,
        "no run fetched the file"
    );
    assert_eq!(
        files_in(&bed.local()).get("big.xml"),
        Some(&expected),
        "arrived whole"
    );
    assert_eq!(
        all_names(&bed.local()),
        ["big.xml"],
        "exactly once, and the dead run's part was replaced, not left behind"
    );
    assert!(
        !bed.server.path("out/big.xml").exists(),
        "deleted after delivery"
    );
}
