//! The exactly-once and nothing-leaked promises under stress: a claim lost mid-transfer
//! (taken over, or Redis frozen), symbolic links in the outgoing folder, links planted at a
//! download's destination, two flows into one folder, and what `hash` and `content` modes
//! count as a duplicate. Real vsftpd, the real Redis (a private one where it is frozen).

use std::process::Command;
use std::time::Duration;

use ferry_shared::idempotency::DeliveryRecord;
use ferry_shared::transfer::{Outcome, run_flow};
use ferry_tests::bed::{
    Bed, all_names, download, files_in, names_with, options, redis_url, run, sha256_hex, upload,
    write_files,
};
use ferry_tests::ftp::FtpServerKind;
use sha2::{Digest, Sha256};

#[tokio::test]
async fn overwrite_false_never_replaces_a_file_at_the_destination() {
    let bed = Bed::start("no-overwrite", FtpServerKind::Vsftpd).await;
    let partners = b"<the partner's own/>";
    bed.server.write_file("in/a.xml", partners).expect("remote");
    std::fs::write(bed.local().join("a.xml"), b"<new/>").expect("local");
    let flow = upload("    overwrite: false\n    delete_after_upload: true\n");
    let engine = bed.engine_for(&flow).await;

    let report = run(&engine, "run-1").await;

    let row = &report.files[0];
    assert_eq!(row.outcome, Outcome::Failed, "{row:?}");
    assert_eq!(row.error.as_ref().expect("error").kind, "target_exists");
    assert_eq!(
        std::fs::read(bed.server.path("in/a.xml")).expect("remote"),
        partners
    );
    assert!(bed.local().join("a.xml").exists(), "the source is kept");

    // Downloads: a local file under the same name stays as it is.
    let bed = Bed::start("no-overwrite-down", FtpServerKind::Vsftpd).await;
    bed.server
        .write_file("out/b.xml", b"<remote/>")
        .expect("remote");
    std::fs::write(bed.local().join("b.xml"), b"<local, kept/>").expect("local");
    let flow = download("    overwrite: false\n    delete_after_download: true\n");
    let engine = bed.engine_for(&flow).await;

    let report = run(&engine, "run-2").await;

    let row = &report.files[0];
    assert_eq!(row.error.as_ref().expect("error").kind, "target_exists");
    assert_eq!(
        std::fs::read(bed.local().join("b.xml")).expect("local"),
        b"<local, kept/>"
    );
    assert!(bed.server.path("out/b.xml").exists(), "the remote is kept");
    assert_eq!(all_names(&bed.local()), ["b.xml"], "no temporary file left");
}

#[tokio::test]
async fn a_symbolic_link_in_the_outgoing_folder_is_never_followed_outside_it() {
    let bed = Bed::start("links", FtpServerKind::Vsftpd).await;
    let secret_dir = tempfile::tempdir().expect("outside");
    let secret = secret_dir.path().join("secret.xml");
    std::fs::write(&secret, b"<secret>not for the partner</secret>").expect("secret");
    std::fs::write(bed.local().join("real.xml"), b"<real/>").expect("real");
    // Inside the folder, under a name the flow's pattern does not take by itself.
    std::fs::write(bed.local().join("aliased.dat"), b"<aliased/>").expect("aliased");
    std::os::unix::fs::symlink(&secret, bed.local().join("leak.xml")).expect("link out");
    std::os::unix::fs::symlink(
        bed.local().join("aliased.dat"),
        bed.local().join("alias.xml"),
    )
    .expect("link in");

    let engine = bed.engine_for(&upload("")).await;
    let report = run(&engine, "run-1").await;

    assert!(report.is_success(), "{}", report.summary_line());
    assert_eq!(names_with(&report, Outcome::Transferred), ["real.xml"]);
    assert_eq!(
        names_with(&report, Outcome::Skipped),
        ["alias.xml", "leak.xml"]
    );
    for row in report
        .files
        .iter()
        .filter(|r| r.outcome == Outcome::Skipped)
    {
        assert_eq!(
            row.error.as_ref().expect("reason").kind,
            "link_not_followed"
        );
    }
    assert_eq!(
        bed.remote_files("in").keys().collect::<Vec<_>>(),
        ["real.xml"],
        "the link's target never reached the partner"
    );

    // follow_links: true takes the link inside the folder, never the one leaving it.
    let engine = bed.engine_for(&upload("    follow_links: true\n")).await;
    let report = run(&engine, "run-2").await;
    assert_eq!(names_with(&report, Outcome::Skipped), ["leak.xml"]);
    let remote = bed.remote_files("in");
    assert_eq!(remote.keys().collect::<Vec<_>>(), ["alias.xml", "real.xml"]);
    assert_eq!(remote["alias.xml"], sha256_hex(b"<aliased/>"));
}

/// Another worker takes the claim over while the upload runs (as after an expired lease):
/// the transfer stops, the file is reported `lease_lost`, and its source stays in place.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_taken_over_mid_upload_keeps_the_source_and_says_so() {
    let bed = Bed::start("takeover", FtpServerKind::Vsftpd).await;
    let big = bed.local().join("big.xml");
    {
        let chunk = vec![b'x'; 1 << 20];
        let mut f = std::fs::File::create(&big).expect("create");
        for _ in 0..400 {
            std::io::Write::write_all(&mut f, &chunk).expect("write");
        }
    }
    let flow = upload("    delete_after_upload: true\n    max_attempts: 1\n");
    let mut opts = options("w1");
    opts.claim_lease = Duration::from_secs(1);
    let engine = bed.engine(bed.config(&flow, None), opts).await;

    // Once the claim exists, overwrite it with another worker's token.
    let pattern = format!("{}*:claim:*", bed.prefix.0);
    let thief = tokio::task::spawn_blocking(move || {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while std::time::Instant::now() < deadline {
            let out = Command::new("redis-cli")
                .args(["-u", &redis_url(), "--scan", "--pattern", &pattern])
                .output()
                .expect("redis-cli");
            if let Some(key) = String::from_utf8_lossy(&out.stdout).lines().next() {
                let set = Command::new("redis-cli")
                    .args([
                        "-u",
                        &redis_url(),
                        "SET",
                        key,
                        "other-worker/stolen",
                        "PX",
                        "60000",
                    ])
                    .output()
                    .expect("redis-cli SET");
                return set.status.success();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    });
    let report = run(&engine, "run-1").await;
    assert!(thief.await.expect("thief"), "the claim was never seen");

    let row = &report.files[0];
    assert_eq!(row.outcome, Outcome::Failed, "{row:?}");
    assert_eq!(
        row.error.as_ref().expect("error").kind,
        "lease_lost",
        "{row:?}"
    );
    assert!(big.exists(), "the source is kept when the claim is lost");
}

/// Two download flows fetch files of the same name into one folder: their temporary files
/// never meet, and the second never replaces what the first delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_download_flows_into_one_folder_never_replace_each_other() {
    let bed = Bed::start("two-flows", FtpServerKind::Vsftpd).await;
    let first: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    let second: Vec<u8> = (0..3_000_000u32).map(|i| (i % 241) as u8).collect();
    bed.server.write_file("out/a.xml", &first).expect("out");
    bed.server
        .write_file("other/a.xml", &second)
        .expect("other");
    std::fs::create_dir_all(bed.dir.path().join("flows")).expect("flows/");
    std::fs::write(
        bed.dir.path().join("flows/g.yaml"),
        "flows:\n  g:\n    direction: download\n    source: { partner: partner, path: /other }\n    \
         local: { path: ./local }\n    files:\n      - pattern: \"*.xml\"\n    min_file_age: 0s\n",
    )
    .expect("flow g");
    let engine = bed.engine_for(&download("")).await;

    let (f, g) = tokio::join!(
        run_flow(&engine, "f", None, "run-f", None),
        run_flow(&engine, "g", None, "run-g", None)
    );
    let (f, g) = (f.expect("run f"), g.expect("run g"));

    let rows = [&f.files[0], &g.files[0]];
    let delivered: Vec<_> = rows
        .iter()
        .filter(|r| r.outcome == Outcome::Transferred)
        .collect();
    let refused: Vec<_> = rows
        .iter()
        .filter(|r| r.error.as_ref().is_some_and(|e| e.kind == "target_exists"))
        .collect();
    assert_eq!((delivered.len(), refused.len()), (1, 1), "{rows:#?}");
    let winner = if f.files[0].outcome == Outcome::Transferred {
        &first
    } else {
        &second
    };
    assert_eq!(files_in(&bed.local())["a.xml"], sha256_hex(winner));
    assert_eq!(all_names(&bed.local()), ["a.xml"], "no part left behind");
}

/// A link planted under a download's final name never sends the data through it.
#[tokio::test]
async fn a_link_planted_at_a_downloads_final_name_is_not_written_through() {
    let bed = Bed::start("planted", FtpServerKind::Vsftpd).await;
    bed.server
        .write_file("out/b.xml", b"<from the partner/>")
        .expect("out");
    let outside = tempfile::tempdir().expect("outside");
    let victim = outside.path().join("victim");
    std::fs::write(&victim, b"precious").expect("victim");
    std::os::unix::fs::symlink(&victim, bed.local().join("b.xml")).expect("plant");

    // Default (overwrite: false for downloads): refused, nothing written anywhere.
    let engine = bed.engine_for(&download("")).await;
    let report = run(&engine, "run-1").await;
    assert_eq!(
        report.files[0].error.as_ref().expect("error").kind,
        "target_exists"
    );
    assert_eq!(std::fs::read(&victim).expect("victim"), b"precious");

    // overwrite: true replaces the link itself, never its target.
    let engine = bed.engine_for(&download("    overwrite: true\n")).await;
    let report = run(&engine, "run-2").await;
    assert_eq!(names_with(&report, Outcome::Transferred), ["b.xml"]);
    assert_eq!(std::fs::read(&victim).expect("victim"), b"precious");
    let b = bed.local().join("b.xml");
    assert!(!b.symlink_metadata().expect("b").file_type().is_symlink());
    assert_eq!(std::fs::read(b).expect("b"), b"<from the partner/>");
}

/// A run of 20 files, 4 of them empty (the everyday "no records today" file): in `hash`
/// mode (the default) every file reaches the partner under its own name, and a rerun names
/// the earlier delivery of each. `content` mode deduplicates across names, as documented.
#[tokio::test]
async fn empty_files_under_their_own_names_are_all_delivered() {
    let bed = Bed::start("empties", FtpServerKind::Vsftpd).await;
    let mut sent = write_files(&bed.local(), 16, 300);
    for i in 0..4 {
        let name = format!("empty{i}.xml");
        std::fs::write(bed.local().join(&name), b"").expect("empty");
        sent.insert(name, sha256_hex(b""));
    }
    let engine = bed
        .engine_for(&upload("    delete_after_upload: true\n"))
        .await;

    let first = run(&engine, "run-1").await;
    assert_eq!(first.totals.transferred, 20, "{}", first.summary_line());
    assert_eq!(
        bed.remote_files("in"),
        sent,
        "every file, empty ones included"
    );
    assert!(
        files_in(&bed.local()).is_empty(),
        "sources deleted after delivery"
    );

    // The same files again: duplicates of their own earlier deliveries.
    for (name, _) in sent.iter().filter(|(n, _)| n.starts_with("empty")) {
        std::fs::write(bed.local().join(name), b"").expect("again");
    }
    let again = run(&engine, "run-2").await;
    assert_eq!(
        again.totals.skipped_duplicates,
        4,
        "{}",
        again.summary_line()
    );
    for row in &again.files {
        let earlier = row.earlier.as_ref().expect("the earlier delivery");
        assert_eq!(
            (earlier.file_name.as_str(), earlier.flow_run_id.as_str()),
            (row.name.as_str(), "run-1")
        );
    }
}

#[tokio::test]
async fn content_mode_deduplicates_across_names_as_documented() {
    let bed = Bed::start("content-mode", FtpServerKind::Vsftpd).await;
    for i in 0..4 {
        std::fs::write(bed.local().join(format!("empty{i}.xml")), b"").expect("empty");
    }
    let flow = upload("    idempotency_mode: content\n");
    let engine = bed.engine_for(&flow).await;

    let report = run(&engine, "run-1").await;

    assert_eq!(report.totals.transferred, 1, "{}", report.summary_line());
    assert_eq!(report.totals.skipped_duplicates, 3);
    assert_eq!(bed.remote_files("in").len(), 1);
}

/// Records written by earlier versions (hash mode keyed on content alone) still prove a
/// delivery for the file name they carry, and only for it.
#[tokio::test]
async fn records_of_the_content_only_layout_still_count_for_their_own_name() {
    let bed = Bed::start("legacy", FtpServerKind::Vsftpd).await;
    let bytes = b"<invoice n='1'/>";
    std::fs::write(bed.local().join("a.xml"), bytes).expect("a");
    std::fs::write(bed.local().join("b.xml"), bytes).expect("b");
    let engine = bed.engine_for(&upload("")).await;
    let digest: [u8; 32] = Sha256::digest(bytes).into();
    let legacy = serde_json::json!({
        "file_name": "a.xml", "size": bytes.len(), "sha256": hex::encode(digest),
        "remote_path": "/in/a.xml", "delivered_at": "2026-11-01T08:00:00Z",
        "flow_run_id": "old-run", "trace_id": null, "direction": "upload"
    });
    let key = format!(
        "{}:{{flow:f}}:delivered:sha256:{}",
        bed.prefix.0,
        hex::encode(digest)
    );
    let set = Command::new("redis-cli")
        .args(["-u", &redis_url(), "SET", &key, &legacy.to_string()])
        .output()
        .expect("redis-cli");
    assert!(set.status.success());

    let report = run(&engine, "run-1").await;

    assert_eq!(names_with(&report, Outcome::Duplicate), ["a.xml"]);
    assert_eq!(names_with(&report, Outcome::Transferred), ["b.xml"]);
    let a = report.files.iter().find(|r| r.name == "a.xml").expect("a");
    assert_eq!(a.earlier.as_ref().expect("earlier").flow_run_id, "old-run");
}

/// The lease-loss drill: Redis freezes mid-upload for longer than half the claim's lease.
/// The transfer stops (ferry can no longer prove it holds the file), the file is reported
/// `lease_lost` with its source kept, and a later run delivers it exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_frozen_mid_upload_stops_the_transfer_and_a_later_run_delivers_once() {
    let redis = ferry_tests::redis::RedisServer::start().expect("private redis");
    let mut bed = Bed::start("frozen", FtpServerKind::Vsftpd).await;
    bed.redis = redis.url();
    let big = bed.local().join("big.xml");
    let expected = {
        let mut hasher = Sha256::new();
        let mut f = std::fs::File::create(&big).expect("create");
        for i in 0..500u32 {
            let chunk = vec![(i % 251) as u8; 1 << 20];
            hasher.update(&chunk);
            std::io::Write::write_all(&mut f, &chunk).expect("write");
        }
        hex::encode(hasher.finalize())
    };
    let flow = upload("    delete_after_upload: true\n    max_attempts: 1\n");
    let mut opts = options("w1");
    opts.claim_lease = Duration::from_secs(2);
    opts.flow_lock_lease = Duration::from_secs(2);
    let engine = bed.engine(bed.config(&flow, None), opts).await;

    let url = redis.url();
    let freezer = tokio::spawn(async move {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while std::time::Instant::now() < deadline {
            let out = Command::new("redis-cli")
                .args(["-u", &url, "--scan", "--pattern", "*:claim:*"])
                .output()
                .expect("redis-cli");
            if !out.stdout.is_empty() {
                redis.freeze();
                tokio::time::sleep(Duration::from_secs(3)).await;
                redis.thaw();
                return redis;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("the claim never appeared");
    });
    let report = run(&engine, "run-1").await;
    let _redis = freezer.await.expect("freezer");

    let row = &report.files[0];
    assert_eq!(row.outcome, Outcome::Failed, "{row:?}");
    assert_eq!(
        row.error.as_ref().expect("error").kind,
        "lease_lost",
        "{row:?}"
    );
    assert!(big.exists(), "the source is kept");
    assert!(
        !bed.server.path("in/big.xml").exists(),
        "the stopped transfer published nothing"
    );

    // Once the dead claim has expired, a run delivers the file once.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let next = run(&engine, "run-2").await;
    assert_eq!(
        names_with(&next, Outcome::Transferred),
        ["big.xml"],
        "{next:#?}"
    );
    assert_eq!(bed.remote_files("in").get("big.xml"), Some(&expected));
    assert!(!big.exists(), "deleted after the recorded delivery");
}

/// Gives the server's file `path` a modification time `age` ago.
fn age_file(path: &std::path::Path, age: Duration) {
    let file = std::fs::File::options()
        .write(true)
        .open(path)
        .expect("open");
    file.set_modified(std::time::SystemTime::now() - age)
        .expect("set mtime");
}

/// `none` mode gives upload parts random names (no claim, no intent), so a crashed upload's
/// part is never written over: a run removes the parts of ferry's own that are older than
/// any live upload could be, and nothing else (vsftpd lists hidden files only for
/// `LIST -a`). With claims, a part is named after its delivery key and never swept (a commit
/// intent may point at it).
#[tokio::test]
async fn stale_upload_parts_are_swept_in_none_mode_only() {
    for (mode, swept) in [("none", true), ("name", false)] {
        let bed = Bed::start(&format!("sweep-{mode}"), FtpServerKind::Vsftpd).await;
        let stale = ".old.xml.0123456789ab.ferry-part";
        let fresh = ".new.xml.abcdef012345.ferry-part";
        let partners = ".partner-lock";
        for name in [stale, fresh, partners] {
            bed.server
                .write_file(&format!("in/{name}"), b"partial")
                .expect("remote");
        }
        let two_hours = Duration::from_secs(2 * 3600);
        age_file(&bed.server.path(&format!("in/{stale}")), two_hours);
        age_file(&bed.server.path(&format!("in/{partners}")), two_hours);
        std::fs::write(bed.local().join("a.xml"), b"<a/>").expect("local");

        let flow = format!("    idempotency_mode: {mode}\n");
        let report = run(&bed.engine_for(&upload(&flow)).await, "run-1").await;

        assert!(report.is_success(), "{}", report.summary_line());
        let expected: &[&str] = if swept {
            &[fresh, partners, "a.xml"]
        } else {
            &[fresh, stale, partners, "a.xml"]
        };
        assert_eq!(
            all_names(&bed.server.path("in")),
            expected,
            "{mode}: only the stale part of ferry's own is gone, and only without claims"
        );
    }
}

/// The restart drill: Redis (AOF on) restarts in the middle of a many-file upload run.
/// No file is sent without a claim, the run takes no new file once Redis is gone (even
/// when it is back a moment later), files not started are reported `store_unavailable`
/// and kept locally, nothing is lost, and a later run delivers every file exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restarting_mid_run_stops_new_files_and_a_later_run_delivers_each_once() {
    let mut redis = ferry_tests::redis::RedisServer::start_durable().expect("private redis");
    let mut bed = Bed::start("restart", FtpServerKind::Vsftpd).await;
    bed.redis = redis.url();
    let files = write_files(&bed.local(), 60, 1 << 20);
    // The partner's bandwidth cap (20 MB/s for all connections) makes the run last about
    // three seconds, so the restart below lands mid-run however fast the machine is.
    let config = bed.config_with_connection(
        &upload("    delete_after_upload: true\n"),
        "    max_bytes_per_second: 20000000\n",
    );
    let engine = bed.engine(config, options("w1")).await;

    // Restart Redis once a few deliveries are recorded; remember when it went away.
    let keys = format!("{}:{{flow:f}}:delivered:*", bed.prefix.0);
    let url = redis.url();
    let restarter = tokio::task::spawn_blocking(move || {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            let out = Command::new("redis-cli")
                .args(["-u", &url, "--scan", "--pattern", &keys])
                .output()
                .expect("redis-cli");
            if String::from_utf8_lossy(&out.stdout).lines().count() >= 3 {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "no delivery recorded");
            std::thread::sleep(Duration::from_millis(10));
        }
        let went_away = std::time::SystemTime::now();
        redis
            .restart(Duration::from_secs(2))
            .expect("restart redis");
        (redis, went_away)
    });
    let report = run(&engine, "run-1").await;
    let (_redis, went_away) = restarter.await.expect("restarter");

    let sent = names_with(&report, Outcome::Transferred);
    assert!(
        sent.len() < files.len(),
        "Redis went away mid-run: {report:#?}"
    );
    let unavailable: Vec<_> = report
        .files
        .iter()
        .filter(|r| {
            r.error
                .as_ref()
                .is_some_and(|e| e.kind == "store_unavailable")
        })
        .collect();
    assert!(!unavailable.is_empty(), "{report:#?}");
    // Files reported store_unavailable are kept; those not renamed into place by the run
    // (no remote path in their row) are not at the partner.
    let on_server = bed.remote_files("in");
    for row in &unavailable {
        assert!(bed.local().join(&row.name).exists(), "kept: {row:?}");
        assert_eq!(
            on_server.contains_key(&row.name),
            row.remote_path.is_some(),
            "{row:?}"
        );
    }
    // Nothing lost: every file is at the partner or still here.
    let here = files_in(&bed.local());
    for name in files.keys() {
        assert!(
            here.contains_key(name) || on_server.contains_key(name),
            "{name} is neither here nor there"
        );
    }
    // Every file at the partner went under a claim: its delivery record (or, when Redis
    // was down for the record, its commit intent) is in Redis.
    let recorded = bed.recorded_names();
    let intents = bed.flow_keys("intent").len();
    let unrecorded = on_server.keys().filter(|n| !recorded.contains(*n)).count();
    assert!(
        unrecorded <= intents,
        "{unrecorded} sent files without a record, {intents} intents"
    );
    // The run stopped taking files: at most the files already under way when Redis went
    // away (one per connection) were delivered after that.
    let delivered_after = bed
        .flow_keys("delivered")
        .iter()
        .filter_map(|key| {
            let out = Command::new("redis-cli")
                .args(["-u", &bed.redis, "GET", key])
                .output()
                .expect("redis-cli");
            serde_json::from_slice::<DeliveryRecord>(&out.stdout).ok()
        })
        .filter(|record| std::time::SystemTime::from(record.delivered_at) > went_away)
        .count();
    assert!(
        delivered_after <= 4,
        "{delivered_after} files were taken after Redis went away: {report:#?}"
    );

    // A later run delivers the rest; each file once, with its bytes.
    let next = run(&engine, "run-2").await;
    assert!(next.is_success(), "{next:#?}");
    let again: Vec<&str> = names_with(&next, Outcome::Transferred)
        .into_iter()
        .filter(|n| sent.contains(n))
        .collect();
    assert!(again.is_empty(), "sent twice: {again:?}");
    assert_eq!(bed.remote_files("in"), files);
    assert_eq!(bed.recorded_names().len(), files.len());
    assert!(
        files_in(&bed.local()).is_empty(),
        "every source deleted once recorded"
    );
}
