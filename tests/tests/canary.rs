//! A canary secret goes nowhere but to the partner.
//!
//! The partner's password lives only in OpenBao. A worker runs the flow twice: once with a
//! distinctive wrong password (the login fails and the run is dead-lettered) and once with the
//! right one (the file arrives). Then every place an operator, a log pipeline or an attacker
//! with read access could look is searched, byte for byte, for either password and for the
//! Vault token: every log line of the worker, every span and metric it exported over OTLP
//! (the raw protobuf bodies: a string attribute is its UTF-8 bytes there), the Prometheus page
//! it served, the flow's audit trail (`ferry-worker audit export`), and the dead letter's
//! payload and headers.

use std::collections::BTreeMap;
use std::time::Duration;

use ferry_tests::audit_trail::audit_command;
use ferry_tests::fleet::{Fleet, FleetOptions, FleetProcess};
use ferry_tests::ftp::FTP_PASSWORD;
use ferry_tests::otlp_collector::{Received, start_collector};
use ferry_tests::prometheus::http_get;
use ferry_tests::vault::OpenBao;
use tokio::sync::mpsc;

/// The wrong password of the failing run: distinctive, so that a hit cannot be chance.
const CANARY: &str = "canary-Qx7vR2-never-print-me";

/// How long a worker gets to start, or a run to settle.
const WAIT: Duration = Duration::from_secs(60);

/// Polls `done` every 100 ms until it holds; panics with `what` after [`WAIT`].
async fn until(what: &str, process: &mut FleetProcess, mut done: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !done().await {
        assert!(
            process.is_running(),
            "the worker exited before {what}:\n{}",
            process.tail(30)
        );
        assert!(
            tokio::time::Instant::now() < deadline,
            "no {what} within {WAIT:?}:\n{}",
            process.tail(30)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until the worker's `/readyz` says it consumes.
async fn ready(worker: &mut FleetProcess) {
    let addr = worker.health.expect("the worker's health address");
    until("readiness", worker, async || {
        http_get(addr, "/readyz").is_ok_and(|answer| answer.status == 200)
    })
    .await;
}

/// The worker's `/metrics` page.
fn metrics_page(worker: &FleetProcess) -> String {
    let addr = worker.health.expect("the worker's health address");
    let answer = http_get(addr, "/metrics").expect("GET /metrics");
    assert_eq!(answer.status, 200, "{}", answer.body);
    answer.body
}

/// Every place where the secrets must not be, by name.
fn places(
    workers: &[(&str, &FleetProcess)],
    exported: &[Received],
    metrics_pages: &[String],
    dead_letter: &ferry_shared::broker::DeadLetter,
    audit_export: &str,
) -> BTreeMap<String, Vec<u8>> {
    let mut places = BTreeMap::new();
    places.insert("audit export".into(), audit_export.as_bytes().to_vec());
    for (name, worker) in workers {
        places.insert(
            format!("log of the {name} worker"),
            worker.log_text().into_bytes(),
        );
    }
    for (n, request) in exported.iter().enumerate() {
        places.insert(
            format!("OTLP export {n} to {}", request.path),
            request.body.clone(),
        );
    }
    for (n, page) in metrics_pages.iter().enumerate() {
        places.insert(format!("/metrics page {n}"), page.clone().into_bytes());
    }
    places.insert("dead letter payload".into(), dead_letter.payload.clone());
    places.insert(
        "dead letter headers".into(),
        format!("{:?}", dead_letter.headers).into_bytes(),
    );
    places
}

/// Every request the collector has received so far.
fn drain(requests: &mut mpsc::UnboundedReceiver<Received>) -> Vec<Received> {
    let mut all = Vec::new();
    while let Ok(request) = requests.try_recv() {
        all.push(request);
    }
    all
}

#[tokio::test]
async fn no_secret_appears_in_logs_spans_metrics_audit_records_or_dead_letters_after_a_failing_and_a_good_run()
 {
    let vault = OpenBao::start().await.expect("OpenBao");
    vault
        .write_secret("secret", "partners/canary", &[("password", CANARY)])
        .await
        .expect("write the wrong password");
    let (collector, mut requests) = start_collector().await.expect("collector");
    let token_dir = tempfile::tempdir().expect("tempdir");
    let token_file = token_dir.path().join("vault-token");
    std::fs::write(&token_file, &vault.root_token).expect("token file");
    let fleet = Fleet::start(
        "canary",
        FleetOptions {
            retry_delays: vec!["1s".into()],
            max_attempts: 2,
            ..FleetOptions::default()
        },
    )
    .await
    .expect("fleet");
    fleet
        .append_settings(&format!(
            "vault:\n  address: {}\n  auth:\n    method: token\n    token: file:{}\n\
             telemetry:\n  otlp_endpoint: http://{collector}\n",
            vault.addr,
            token_file.display()
        ))
        .expect("vault and telemetry settings");
    fleet
        .set_partner_password("vault:secret/partners/canary#password")
        .expect("the password from Vault");
    fleet.config().expect("the configuration loads");
    fleet
        .write_local("canary.xml", b"<canary/>")
        .expect("local file");

    // The failing run: the partner refuses the canary; the run is dead-lettered.
    let mut failing = fleet.spawn_worker("failing").expect("worker");
    let broker = fleet.broker().await.expect("broker");
    ready(&mut failing).await;
    fleet.publish_manual_run().await.expect("publish");
    until("a dead letter", &mut failing, async || {
        broker.dead_letter_depth().await.unwrap_or(0) > 0
    })
    .await;
    let mut pages = vec![metrics_page(&failing)];
    failing.stop(WAIT).await.expect("the failing worker stops");
    let dead_letter = broker
        .take_dead_letter()
        .await
        .expect("basic.get")
        .expect("the failed run is a dead letter");

    // The good run: the right password, a new worker (no cached secret).
    vault
        .write_secret("secret", "partners/canary", &[("password", FTP_PASSWORD)])
        .await
        .expect("write the right password");
    let mut good = fleet.spawn_worker("good").expect("worker");
    ready(&mut good).await;
    fleet.publish_manual_run().await.expect("publish");
    until("the file at the partner", &mut good, async || {
        fleet.remote_names() == ["canary.xml"]
    })
    .await;
    pages.push(metrics_page(&good));
    good.stop(WAIT).await.expect("the good worker stops");
    let _ = broker.close().await;

    let audit = audit_command(fleet.config_dir(), &["export", "--flow", "f"], &[])
        .await
        .expect("audit export runs");
    assert_eq!(audit.code, Some(0), "{}", audit.stderr);
    assert!(
        audit.stdout.contains("canary.xml"),
        "the good run's transfer is in the trail, so the search covers it:\n{}",
        audit.stdout
    );

    let exported = drain(&mut requests);
    assert!(
        exported.iter().any(|r| r.path == "/v1/traces"),
        "spans were exported, so the search covers them"
    );
    assert!(
        exported.iter().any(|r| r.path == "/v1/metrics"),
        "metrics were exported, so the search covers them"
    );
    let secrets = [
        ("the wrong password", CANARY),
        ("the partner's password", FTP_PASSWORD),
        ("the Vault token", vault.root_token.as_str()),
    ];
    let places = places(
        &[("failing", &failing), ("good", &good)],
        &exported,
        &pages,
        &dead_letter,
        &audit.stdout,
    );
    for (place, bytes) in &places {
        for (secret, value) in secrets {
            assert!(
                !contains(bytes, value.as_bytes()),
                "{secret} appears in the {place}"
            );
        }
    }
}

/// Whether `needle` occurs in `haystack`.
fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}
