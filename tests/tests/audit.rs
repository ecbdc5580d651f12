//! The audit trail with the real `ferry-worker` binary, the real Redis and a real FTPS
//! server (vsftpd): two workers running one flow at once leave one chain that verifies and
//! holds exactly one `transferred` record per file; editing a byte of a record, deleting a
//! record or swapping two makes `audit verify` exit 1 naming the record; with an HMAC key a
//! chain rebuilt without the key fails; a trail trimmed by the retention still verifies; no
//! secret reaches a record. Concurrent appends never fork the chain on either store (Redis
//! and embedded: `redis::` and `embedded::`); the tampering tests edit the Redis stream and
//! stay Redis-only (the embedded trail through the binaries is in `embedded_store.rs`).

use std::collections::{BTreeMap, BTreeSet};

use std::time::Duration;

use ferry_shared::audit::{
    AuditDirection, AuditEvent, AuditLog, AuditOutcome, AuditStore, Filter, Verdict, read,
    record_hash, verify,
};
use ferry_shared::config::AuditSettings;
use ferry_shared::idempotency::{Store, StoreConfig};
use ferry_shared::secrets::{Resolver, ResolverSettings};
use ferry_tests::audit_trail::{AuditCommand, Entry, Trail, audit_command};
use ferry_tests::bed::{Bed, download, parse_run, run, upload, write_files};
use ferry_tests::fleet::{span_field, target};
use ferry_tests::ftp::{FTP_PASSWORD, FtpServerKind};
use ferry_tests::redis::RedisServer;
use ferry_tests::redis_cluster::RedisCluster;
use ferry_tests::store_target::{Target, TestStore};
use serde_json::Value;
use tracing::Span;

/// The HMAC key of the keyed trail, given to the worker through the environment.
const AUDIT_KEY: &str = "audit-hmac-key-9c1e7d0b44";
/// A partner password that must never appear in a record (the login with it fails).
const CANARY: &str = "Canary-Pw-Zq8x-must-not-leak";

/// `ferry-worker run` of flow `f` with JSON logs on stderr; its report and log lines.
async fn run_worker(bed: &Bed, env: &[(&str, &str)]) -> (Option<i32>, Value, Vec<Value>) {
    let mut cmd = bed.worker_run();
    cmd.args(["--log-format", "json"]);
    for (name, value) in env {
        cmd.env(name, value);
    }
    let output = cmd.output().await.expect("ferry-worker run");
    let (code, report) = parse_run(&output);
    let logs = String::from_utf8_lossy(&output.stderr)
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect();
    (code, report, logs)
}

async fn audit(bed: &Bed, args: &[&str], env: &[(&str, &str)]) -> AuditCommand {
    audit_command(bed.dir.path(), args, env)
        .await
        .expect("ferry-worker audit")
}

/// `audit verify --flow f`: its exit code and stdout.
async fn verify_cli(bed: &Bed, env: &[(&str, &str)]) -> (Option<i32>, String) {
    let out = audit(bed, &["verify", "--flow", "f"], env).await;
    (out.code, format!("{}{}", out.stdout, out.stderr))
}

/// Every record as `audit export` writes it, one JSON object per line.
async fn export(bed: &Bed, env: &[(&str, &str)]) -> (String, Vec<Value>) {
    let path = bed.dir.path().join("export.jsonl");
    let out = audit(
        bed,
        &[
            "export",
            "--flow",
            "f",
            "--output",
            path.to_str().expect("utf-8"),
        ],
        env,
    )
    .await;
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let text = std::fs::read_to_string(&path).expect("export file");
    let records = text
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect();
    (text, records)
}

fn outcomes_per_file(records: &[Value], outcome: &str) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for record in records.iter().filter(|r| r["outcome"] == outcome) {
        *counts
            .entry(record["file"].as_str().unwrap_or("").to_owned())
            .or_default() += 1;
    }
    counts
}

/// Adds one to the first digit of the record's `size` value: a one-byte edit.
fn edit_one_byte(entry: &mut Entry) {
    let mut bytes = entry.get("record").expect("record").to_vec();
    let at = find(&bytes, b"\"size\":").expect("size field") + b"\"size\":".len();
    bytes[at] = if bytes[at] == b'9' {
        b'1'
    } else {
        bytes[at] + 1
    };
    entry.set("record", bytes);
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[tokio::test]
async fn two_workers_at_once_leave_one_chain_that_verifies_and_each_tampering_is_named() {
    let bed = Bed::start("audit-two-workers", FtpServerKind::Vsftpd).await;
    bed.config(&upload(""), None);
    let files = write_files(&bed.local(), 30, 4096);

    // Two worker processes run the same flow at the same time.
    let (a, b) = tokio::join!(run_worker(&bed, &[]), run_worker(&bed, &[]));
    assert_eq!((a.0, b.0), (Some(0), Some(0)), "{}\n{}", a.1, b.1);
    let transferred = |report: &Value| report["totals"]["transferred"].as_u64().unwrap_or(0);
    assert_eq!(transferred(&a.1) + transferred(&b.1), 30);

    let (code, out) = verify_cli(&bed, &[]).await;
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("intact, 60 records verified (#1 to #60)"),
        "{out}"
    );

    // One `transferred` and one `duplicate` record per file, with the file's bytes' hash,
    // its key and destination, written by both workers.
    let (_, records) = export(&bed, &[]).await;
    assert_eq!(records.len(), 60);
    let once: BTreeMap<String, usize> = files.keys().map(|n| (n.clone(), 1)).collect();
    assert_eq!(outcomes_per_file(&records, "transferred"), once);
    assert_eq!(outcomes_per_file(&records, "duplicate"), once);
    for record in &records {
        let name = record["file"].as_str().expect("file");
        assert_eq!(
            record["sha256"].as_str(),
            Some(files[name].as_str()),
            "{record}"
        );
        assert_eq!(record["remote_path"], format!("/in/{name}"), "{record}");
        assert_eq!(record["flow"], "f");
        assert_eq!(record["partner"], "partner");
        assert_eq!(record["direction"], "upload");
        assert!(
            record["idempotency_key"]
                .as_str()
                .is_some_and(|k| !k.is_empty())
        );
        assert!(
            record["time"].as_str().is_some_and(|t| t.len() == 30),
            "ns: {record}"
        );
    }
    let workers: BTreeSet<&str> = records
        .iter()
        .filter_map(|r| r["worker"].as_str())
        .collect();
    assert_eq!(workers.len(), 2, "{workers:?}");

    // Each record is also an event on its file's span, in the worker's logs.
    let events: Vec<&Value> =
        a.2.iter()
            .chain(&b.2)
            .filter(|l| target(l) == "ferry::audit")
            .collect();
    assert_eq!(events.len(), 60);
    for event in &events {
        assert_eq!(event["span"]["name"], "file", "{event}");
        assert_eq!(
            span_field(event, "file.name"),
            event["fields"]["file.name"].as_str().map(str::to_owned),
            "{event}"
        );
    }

    // One file's history: transferred, then a duplicate on the later run.
    let name = files.keys().next().expect("a file").clone();
    let history = audit(&bed, &["--flow", "f", "--file", &name, "--json"], &[]).await;
    assert_eq!(history.code, Some(0), "{}", history.stderr);
    let rows: Vec<Value> = serde_json::from_str(&history.stdout).expect("--json parses");
    let outcomes: Vec<&str> = rows.iter().filter_map(|r| r["outcome"].as_str()).collect();
    assert_eq!(outcomes, ["transferred", "duplicate"]);
    assert_ne!(rows[0]["run_id"], rows[1]["run_id"]);
    let text = audit(&bed, &["--flow", "f", "--file", &name], &[]).await;
    let lines: Vec<&str> = text.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{}", text.stdout);
    assert!(
        lines[0].contains("transferred") && lines[0].contains(&name),
        "{}",
        lines[0]
    );
    assert!(lines[1].contains("duplicate"), "{}", lines[1]);
    // Each line names its worker and the trace to look up in the tracing back end.
    for (line, row) in lines.iter().zip(&rows) {
        let trace = row["trace_id"].as_str().expect("a trace id");
        assert!(line.contains(&format!("trace {trace}")), "{line}");
        assert!(line.contains(row["worker"].as_str().unwrap()), "{line}");
    }

    // `--since` keeps the records at or after a time (an age, or RFC 3339).
    let recent = audit(&bed, &["--flow", "f", "--since", "1h", "--json"], &[]).await;
    let recent: Vec<Value> = serde_json::from_str(&recent.stdout).expect("--json parses");
    assert_eq!(recent.len(), 60);
    let future = audit(
        &bed,
        &["--flow", "f", "--since", "2999-01-01T00:00:00Z", "--json"],
        &[],
    )
    .await;
    assert_eq!(future.stdout.trim(), "[]");

    // Tampering, each undone before the next (and the trail verifies again).
    let mut trail = Trail::open(&bed.redis, &bed.prefix.0, "f").expect("trail");
    let original = trail.entries().expect("entries");
    assert_eq!(original.len(), 60);

    let mut edited = original.clone();
    edit_one_byte(&mut edited[9]);
    trail.rewrite(&edited).expect("rewrite");
    let (code, out) = verify_cli(&bed, &[]).await;
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains(&format!("record #10 (stream id {}", original[9].id)),
        "{out}"
    );
    assert!(out.contains("was edited"), "{out}");
    trail.rewrite(&original).expect("restore");
    assert_eq!(verify_cli(&bed, &[]).await.0, Some(0));

    trail.delete(&original[19].id).expect("XDEL");
    let (code, out) = verify_cli(&bed, &[]).await;
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("record #20 is missing"), "{out}");
    assert!(out.contains(&original[20].id), "{out}");
    trail.rewrite(&original).expect("restore");
    assert_eq!(verify_cli(&bed, &[]).await.0, Some(0));

    let mut swapped = original.clone();
    let (first, second) = (original[29].fields.clone(), original[30].fields.clone());
    swapped[29].fields = second;
    swapped[30].fields = first;
    trail.rewrite(&swapped).expect("rewrite");
    let (code, out) = verify_cli(&bed, &[]).await;
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains(&format!("record #31 (stream id {}", original[29].id)),
        "{out}"
    );
    trail.rewrite(&original).expect("restore");
    assert_eq!(verify_cli(&bed, &[]).await.0, Some(0));
}

#[tokio::test]
async fn with_an_hmac_key_a_rebuilt_chain_fails_a_trimmed_trail_verifies_and_no_secret_is_recorded()
{
    let bed = Bed::start("audit-hmac", FtpServerKind::Vsftpd).await;
    let keyed = "audit:\n  hmac_key: env:FERRY_TEST_AUDIT_KEY\n  retention:\n    max_records: 25\n";
    let env = [("FERRY_TEST_AUDIT_KEY", AUDIT_KEY)];
    write_files(&bed.local(), 10, 1024);

    // A run whose login fails with the canary password, then two that succeed.
    bed.config_with(&upload(""), None, keyed, &format!("literal:{CANARY}"));
    let (code, report, _) = run_worker(&bed, &env).await;
    assert_eq!(code, Some(1), "{report}");
    let password = format!("literal:{FTP_PASSWORD}");
    bed.config_with(&upload(""), None, keyed, &password);
    for expected in ["transferred", "skipped_duplicates"] {
        let (code, report, _) = run_worker(&bed, &env).await;
        assert_eq!(code, Some(0), "{report}");
        assert_eq!(report["totals"][expected], 10, "{report}");
    }

    // 30 records written, the first 5 trimmed: the rest verifies from #6, HMACs included.
    let (code, out) = verify_cli(&bed, &env).await;
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("intact, 25 records verified (#6 to #30); hash chain and HMACs"),
        "{out}"
    );

    let (text, records) = export(&bed, &env).await;
    assert_eq!(records.len(), 25);
    assert_eq!(
        outcomes_per_file(&records, "failed")
            .values()
            .sum::<usize>(),
        5
    );
    assert!(
        records
            .iter()
            .all(|r| r["hmac"].as_str().is_some_and(|m| m.len() == 64))
    );
    for secret in [CANARY, FTP_PASSWORD, AUDIT_KEY] {
        assert!(!text.contains(secret), "{secret} in the trail");
    }

    // A forger changes record #12 and rebuilds the SHA-256 chain after it, without the key.
    let mut trail = Trail::open(&bed.redis, &bed.prefix.0, "f").expect("trail");
    let mut entries = trail.entries().expect("entries");
    let at = entries
        .iter()
        .position(|e| e.record()["seq"] == 12)
        .expect("record #12");
    edit_one_byte(&mut entries[at]);
    let mut prev_old = String::from_utf8_lossy(entries[at].get("hash").expect("hash")).into_owned();
    let mut prev_new = record_hash(entries[at].get("record").expect("record"));
    entries[at].set("hash", prev_new.clone().into_bytes());
    for entry in &mut entries[at + 1..] {
        let record = String::from_utf8_lossy(entry.get("record").expect("record")).replace(
            &format!("\"prev\":\"{prev_old}\""),
            &format!("\"prev\":\"{prev_new}\""),
        );
        prev_old = String::from_utf8_lossy(entry.get("hash").expect("hash")).into_owned();
        prev_new = record_hash(record.as_bytes());
        entry.set("record", record.into_bytes());
        entry.set("hash", prev_new.clone().into_bytes());
    }
    trail.rewrite(&entries).expect("rewrite");
    trail.set_head(&format!("30 {prev_new}")).expect("head");

    let (code, out) = verify_cli(&bed, &env).await;
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("record #12"), "{out}");
    assert!(out.contains("HMAC does not verify"), "{out}");

    // The rebuilt SHA-256 chain itself is consistent: only the key exposes it.
    bed.config_with(
        &upload(""),
        None,
        "audit:\n  retention:\n    max_records: 25\n",
        &password,
    );
    let (code, out) = verify_cli(&bed, &[]).await;
    assert_eq!(code, Some(0), "{out}");
}

async fn writers_appending_at_once_never_fork_the_chain(target: Target) {
    let prefix = TestStore::new(target, "audit-race");
    let settings = AuditSettings::default();
    let resolver = Resolver::new(ResolverSettings::default());
    let mut logs = Vec::new();
    for _ in 0..3 {
        // Each with its own connection, like separate workers.
        let store = prefix.store().await;
        logs.push(AuditLog::new(&settings, &store, resolver.clone()));
    }
    let writers: Vec<_> = logs
        .into_iter()
        .enumerate()
        .map(|(w, log)| {
            tokio::spawn(async move {
                for i in 0..60 {
                    let event = event(&format!("w{w}"), &format!("{w}-{i}.xml"));
                    log.record(&tracing::Span::none(), event).await;
                }
            })
        })
        .collect();
    for writer in writers {
        writer.await.expect("writer");
    }

    let store = AuditStore::new(&prefix.store().await);
    let verdict = verify(&store, "f", None).await.expect("verify");
    assert_eq!(
        verdict,
        Verdict::Intact {
            count: 180,
            first_seq: 1,
            last_seq: 180,
            hmac_checked: false
        }
    );
}

/// A `transferred` event of `file` by `worker`.
fn event(worker: &str, file: &str) -> AuditEvent {
    AuditEvent {
        time: chrono::Utc::now(),
        flow: "f".into(),
        partner: "p".into(),
        direction: AuditDirection::Upload,
        run_id: format!("run-{worker}"),
        trace_id: None,
        worker: worker.to_owned(),
        file: file.to_owned(),
        local_path: None,
        remote_path: None,
        size: 1,
        sha256: None,
        idempotency_key: None,
        outcome: AuditOutcome::Transferred,
        error_kind: None,
        message: None,
    }
}

/// Redis stops answering during an append: the record is kept (the file's outcome was
/// decided already) and written with the next one once Redis answers: once, in order.
#[tokio::test]
async fn a_record_redis_does_not_take_is_kept_and_written_once_in_order_when_it_answers() {
    let redis = RedisServer::start().expect("private redis");
    let mut config = StoreConfig::new(redis.url());
    config.response_timeout = Duration::from_millis(300);
    let store = Store::connect(&config).await.expect("store");
    let resolver = Resolver::new(ResolverSettings::default());
    let log = AuditLog::new(&AuditSettings::default(), &store, resolver);

    log.record(&Span::none(), event("w", "a.xml")).await;
    redis.freeze();
    log.record(&Span::none(), event("w", "b.xml")).await;
    assert_eq!(
        log.flush().await,
        1,
        "b is kept while Redis does not answer"
    );
    redis.thaw();
    log.record(&Span::none(), event("w", "c.xml")).await;
    assert_eq!(log.flush().await, 0);

    let trail = AuditStore::new(&store);
    let verdict = verify(&trail, "f", None).await.expect("verify");
    assert!(
        matches!(verdict, Verdict::Intact { count: 3, .. }),
        "{verdict:?}"
    );
    let mut files = Vec::new();
    read(&trail, "f", &Filter::default(), |r| {
        files.push(r.record.event.file);
        Ok(())
    })
    .await
    .expect("read");
    assert_eq!(files, ["a.xml", "b.xml", "c.xml"]);
}

/// On a Redis Cluster the trail's keys share the flow's slot: the append script runs there
/// and two runs leave one chain that verifies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_trail_is_one_verifiable_chain_on_a_redis_cluster() {
    let cluster = RedisCluster::start().unwrap_or_else(|e| panic!("{e:#}"));
    let mut bed = Bed::start("audit-cluster", FtpServerKind::Vsftpd).await;
    bed.redis_topology = Some(format!(
        "  cluster_nodes: [{}]\n",
        cluster.urls().join(", ")
    ));
    write_files(&bed.local(), 6, 2048);
    let engine = bed.engine_for(&upload("")).await;
    run(&engine, "run-1").await;
    run(&engine, "run-2").await;

    let trail = AuditStore::new(engine.store());
    let verdict = verify(&trail, "f", None).await.expect("verify");
    assert!(
        matches!(verdict, Verdict::Intact { count: 12, .. }),
        "{verdict:?}"
    );
    assert_eq!(
        cluster
            .keys(&format!("{}:{{flow:f}}:audit*", bed.prefix.0))
            .len(),
        2,
        "the stream and its head"
    );
}

/// `(file, outcome, error kind)` of every record of flow `f`, in chain order.
async fn trail_of(engine: &ferry_shared::transfer::Engine) -> Vec<(String, String, String)> {
    let trail = AuditStore::new(engine.store());
    let verdict = verify(&trail, "f", None).await.expect("verify");
    assert!(matches!(verdict, Verdict::Intact { .. }), "{verdict:?}");
    let mut rows = Vec::new();
    read(&trail, "f", &Filter::default(), |r| {
        let r = r.record.event;
        rows.push((
            r.file,
            r.outcome.as_str().to_owned(),
            r.error_kind.unwrap_or_default(),
        ));
        Ok(())
    })
    .await
    .expect("read");
    rows
}

/// An upload that deletes its sources records each deletion after the delivery, and a link
/// it does not follow as `skipped-link`; a download that deletes remote files records
/// `remote-deleted`.
#[tokio::test]
async fn deletions_and_skipped_links_are_records_of_their_own() {
    let bed = Bed::start("audit-upload-events", FtpServerKind::Vsftpd).await;
    std::fs::write(bed.local().join("a.xml"), b"<a/>").expect("a.xml");
    let outside = tempfile::tempdir().expect("outside");
    std::fs::write(outside.path().join("s.xml"), b"<s/>").expect("s.xml");
    std::os::unix::fs::symlink(outside.path().join("s.xml"), bed.local().join("leak.xml"))
        .expect("link");
    let engine = bed
        .engine_for(&upload("    delete_after_upload: true\n"))
        .await;
    run(&engine, "run-1").await;
    let owned = |file: &str, outcome: &str, kind: &str| {
        (file.to_owned(), outcome.to_owned(), kind.to_owned())
    };
    let mut records = trail_of(&engine).await;
    records.sort();
    assert_eq!(
        records,
        [
            owned("a.xml", "source-deleted", ""),
            owned("a.xml", "transferred", ""),
            owned("leak.xml", "skipped-link", "link_not_followed"),
        ]
    );

    let bed = Bed::start("audit-download-events", FtpServerKind::Vsftpd).await;
    std::fs::write(bed.server.path("out/b.xml"), b"<b/>").expect("remote b.xml");
    let engine = bed
        .engine_for(&download("    delete_after_download: true\n"))
        .await;
    run(&engine, "run-1").await;
    assert_eq!(
        trail_of(&engine).await,
        [
            owned("b.xml", "transferred", ""),
            owned("b.xml", "remote-deleted", ""),
        ]
    );
}

/// An upload that archives its sources records `archived` after the delivery, naming the
/// archived file; a download that moves remote files records `remote-moved` with where
/// the file went.
#[tokio::test]
async fn archives_and_remote_moves_are_records_of_their_own() {
    let bed = Bed::start("audit-archive-events", FtpServerKind::Vsftpd).await;
    std::fs::write(bed.local().join("a.xml"), b"<a/>").expect("a.xml");
    let flow = upload("    after_upload: archive\n    archive_path: ./archive\n");
    let engine = bed.engine_for(&flow).await;
    run(&engine, "run-1").await;
    let owned = |file: &str, outcome: &str, kind: &str| {
        (file.to_owned(), outcome.to_owned(), kind.to_owned())
    };
    assert_eq!(
        trail_of(&engine).await,
        [
            owned("a.xml", "transferred", ""),
            owned("a.xml", "archived", ""),
        ]
    );

    let bed = Bed::start("audit-move-events", FtpServerKind::Vsftpd).await;
    bed.server.create_dir("out/done").expect("done/");
    std::fs::write(bed.server.path("out/b.xml"), b"<b/>").expect("remote b.xml");
    let flow = download("    after_download: move\n    move_path: /out/done\n");
    let engine = bed.engine_for(&flow).await;
    run(&engine, "run-1").await;
    assert_eq!(
        trail_of(&engine).await,
        [
            owned("b.xml", "transferred", ""),
            owned("b.xml", "remote-moved", ""),
        ]
    );
}

// The trail's store on Redis and on the embedded store, from one body.
ferry_tests::on_both_stores!(writers_appending_at_once_never_fork_the_chain);
