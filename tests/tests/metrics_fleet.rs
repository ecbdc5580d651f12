//! The fleet metrics of issue 10 beyond files and runs, end to end: a real
//! `ferry-worker consume`, RabbitMQ, Redis and a real FTPS partner, its `/metrics` scraped as
//! Prometheus would (and `promtool check metrics` run on each page). What an operator checks:
//! - a partner that refuses a transfer once: one retry counted (flow, partner, direction,
//!   error kind), the file delivered; the run's queue lag observed; the connects, the
//!   partner's certificate expiry (the test certificate's notAfter), the secret resolutions;
//!   the session open while the pool keeps it, and none open once the worker stopped (its
//!   last OTLP push);
//! - a partner that refuses every connection: each file retry, each failed connect by kind,
//!   each flow-run retry through the delay queues, then one dead letter `retries_exhausted`;
//! - Vault gone between two runs: the second run's password is a stale value served
//!   (`ferry_secret_stale_served_total`), after one Vault login;
//! - a restarted scheduler: its start-up catch-up of a tick already published counts as
//!   `deduplicated` (offer `catch_up`), and the flow's period is exported;
//! - a malformed message: one dead letter `malformed` (the `x-ferry-death-kind` header too),
//!   and a real Prometheus loaded with `infra/prometheus/alerts.yml` fires
//!   `FerryDeadLettersRising` for it.
//!
//! Needs `cargo build -p ferry-worker` first (the binary next to the test).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use ferry_shared::broker::{DEATH_KIND_HEADER, Headers, PublisherOptions};
use ferry_shared::telemetry::LogEvent;
use ferry_tests::fleet::{Fleet, FleetOptions, FleetProcess, noise};
use ferry_tests::ftp::{FtpServerKind, FtpServerOptions, Quirk};
use ferry_tests::otlp_collector::start_collector;
use ferry_tests::otlp_metrics::{last_metrics_export, sum};
use ferry_tests::ports::free_port;
use ferry_tests::prometheus::{Exposition, http_get};
use ferry_tests::prometheus_server::{PrometheusServer, promtool_check_metrics};
use ferry_tests::vault::OpenBao;

/// How long the worker may take to connect and start consuming.
const START: Duration = Duration::from_secs(60);
/// How long a run (or a few retried runs) of a file may take.
const RUN: Duration = Duration::from_secs(90);
/// The test certificate's notAfter (2100-01-01T00:00:00Z, see `ferry_tests::pki`).
const TEST_CERT_NOT_AFTER: f64 = 4_102_444_800.0;

/// Scrapes the worker's `/metrics`, checked by `promtool check metrics`.
fn scrape(worker: &FleetProcess) -> (String, Exposition) {
    let addr = worker.health.expect("the worker's health address");
    let answer = http_get(addr, "/metrics").expect("GET /metrics");
    assert_eq!(answer.status, 200, "{}", answer.body);
    promtool_check_metrics(&answer.body).expect("Prometheus's linter accepts the page");
    let exposition = Exposition::parse(&answer.body).expect("a valid exposition");
    (answer.body, exposition)
}

/// Scrapes until `done` accepts the page, or panics after [`RUN`].
async fn scrape_until(
    worker: &FleetProcess,
    what: &str,
    done: impl Fn(&Exposition) -> bool,
) -> (String, Exposition) {
    let deadline = Instant::now() + RUN;
    loop {
        let (text, exposition) = scrape(worker);
        if done(&exposition) {
            return (text, exposition);
        }
        assert!(
            Instant::now() < deadline,
            "{what} not seen within {RUN:?}\n{text}\n{}",
            worker.tail(30)
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

const UPLOAD: [(&str, &str); 3] = [
    ("flow", "f"),
    ("partner", "partner"),
    ("direction", "upload"),
];

#[tokio::test]
async fn a_transfer_refused_once_is_retried_and_the_partner_metrics_follow_the_session() {
    let (collector, mut requests) = start_collector().await.expect("collector");
    let mut server = FtpServerOptions::new(FtpServerKind::Pyftpdlib);
    server.quirks = vec![Quirk::StorRefusedOnce];
    let fleet = Fleet::start(
        "metrics-retry",
        FleetOptions {
            server: Some(server),
            ..FleetOptions::default()
        },
    )
    .await
    .expect("fleet");
    fleet.push_telemetry_to(collector).expect("telemetry");
    // TLS 1.2 from the start: under TLS 1.3 the session may take the 450 for pyftpdlib's
    // refusal of a data connection without session reuse, and reconnect at TLS 1.2 inside
    // the operation (the fallback) instead of leaving the retry to the retry policy.
    let partner = fleet.config_dir().join("partners/partner.yaml");
    let mut yaml = std::fs::read_to_string(&partner).expect("partner.yaml");
    assert!(yaml.ends_with('\n') && yaml.contains("  tls:\n"), "{yaml}");
    yaml.push_str("    max_version: \"1.2\"\n");
    std::fs::write(&partner, yaml).expect("partner.yaml");
    fleet
        .write_local("refused-once.xml", &noise(2_048, 7))
        .expect("write local file");
    let mut worker = fleet
        .spawn_consuming_worker("worker", START)
        .await
        .expect("a consuming worker");
    fleet.publish_manual_run().await.expect("publish");

    let (text, page) = scrape_until(&worker, "a successful run", |page| {
        page.sum(
            "ferry_flow_runs_total",
            &[("flow", "f"), ("outcome", "success")],
        ) >= 1.0
    })
    .await;
    assert_eq!(fleet.remote_names().len(), 1, "the file arrived");
    let mut transferred = UPLOAD.to_vec();
    transferred.push(("outcome", "transferred"));
    assert_eq!(page.sum("ferry_files_total", &transferred), 1.0, "{text}");
    // The one refusal (a 450 reply to STOR) is one retry of the file, by its kind.
    let mut refused = UPLOAD.to_vec();
    refused.push(("error_kind", "protocol"));
    assert_eq!(page.sum("ferry_file_retries_total", &UPLOAD), 1.0, "{text}");
    assert_eq!(
        page.sum("ferry_file_retries_total", &refused),
        1.0,
        "{text}"
    );
    // Nothing went back to the broker.
    assert_eq!(page.sum("ferry_flow_run_retries_total", &[]), 0.0, "{text}");
    // The run's wait in the queue is observed once, for its flow.
    assert_eq!(
        page.sum("ferry_flow_run_queue_lag_seconds_count", &[("flow", "f")]),
        1.0,
        "{text}"
    );
    let partner = [("partner", "partner")];
    // Two sessions: the one the refusal spoilt (closed) and the one that delivered.
    assert_eq!(
        page.sum(
            "ferry_ftps_connects_total",
            &[("partner", "partner"), ("outcome", "success")]
        ),
        2.0,
        "{text}"
    );
    assert_eq!(
        page.sum("ferry_ftps_connect_failures_total", &partner),
        0.0,
        "{text}"
    );
    assert_eq!(
        page.sum(
            "ferry_partner_certificate_expiry_timestamp_seconds",
            &partner
        ),
        TEST_CERT_NOT_AFTER,
        "{text}"
    );
    // The pool keeps the delivering session for the next run.
    assert_eq!(
        page.sum("ferry_ftps_sessions_open", &partner),
        1.0,
        "{text}"
    );
    // The partner's password (literal) and CA (file) were resolved, nothing failed.
    for store in ["literal", "file"] {
        assert!(
            page.sum(
                "ferry_secret_resolutions_total",
                &[("store", store), ("outcome", "success")]
            ) >= 1.0,
            "{store}\n{text}"
        );
    }
    assert_eq!(
        page.sum("ferry_secret_resolution_failures_total", &[]),
        0.0,
        "{text}"
    );

    // Stopping closes the pooled session: the last push says none is open.
    worker.stop(Duration::from_secs(30)).await.unwrap();
    let last = last_metrics_export(
        &mut requests,
        Duration::from_secs(30),
        Duration::from_secs(2),
    )
    .await
    .expect("the worker's last push");
    assert_eq!(
        sum(
            &last,
            "ferry_ftps_connects_total",
            &[("outcome", "success")]
        ),
        2.0
    );
    assert_eq!(sum(&last, "ferry_ftps_sessions_open", &partner), 0.0);
}

#[tokio::test]
async fn a_partner_refusing_every_connection_counts_retries_failures_and_the_dead_letter() {
    let fleet = Fleet::start(
        "metrics-refused",
        FleetOptions {
            partner_port: Some(free_port()),
            ..FleetOptions::default()
        },
    )
    .await
    .expect("fleet");
    fleet
        .write_local("never-sent.xml", &noise(1_000, 9))
        .expect("write local file");
    let mut worker = fleet
        .spawn_consuming_worker("worker", START)
        .await
        .expect("a consuming worker");
    fleet.publish_manual_run().await.expect("publish");

    let (text, page) = scrape_until(&worker, "the dead letter", |page| {
        page.sum("ferry_dead_letters_total", &[]) >= 1.0
    })
    .await;
    // Three attempts (broker.max_attempts), two of them retried through the delay queues,
    // then dead-lettered as exhausted.
    assert_eq!(
        page.sum("ferry_flow_run_retries_total", &[("flow", "f")]),
        2.0,
        "{text}"
    );
    assert_eq!(
        page.sum(
            "ferry_dead_letters_total",
            &[("reason", "retries_exhausted")]
        ),
        1.0,
        "{text}"
    );
    assert_eq!(
        page.sum(
            "ferry_flow_runs_total",
            &[("flow", "f"), ("outcome", "failed")]
        ),
        3.0,
        "{text}"
    );
    // Each run tried the file twice (retry.max_attempts): one retry per run, by kind.
    let mut refused = UPLOAD.to_vec();
    refused.push(("error_kind", "connection_refused"));
    assert_eq!(
        page.sum("ferry_file_retries_total", &refused),
        3.0,
        "{text}"
    );
    assert_eq!(page.sum("ferry_file_retries_total", &[]), 3.0, "{text}");
    // Every connect failed, refused: counted per partner, by kind.
    let failed = page.sum(
        "ferry_ftps_connects_total",
        &[("partner", "partner"), ("outcome", "failure")],
    );
    assert!(failed >= 6.0, "two connects per run at least\n{text}");
    assert_eq!(
        page.sum(
            "ferry_ftps_connect_failures_total",
            &[("partner", "partner"), ("error_kind", "connection_refused")]
        ),
        failed,
        "{text}"
    );
    assert_eq!(
        page.sum(
            "ferry_ftps_connects_total",
            &[("partner", "partner"), ("outcome", "success")]
        ),
        0.0,
        "{text}"
    );
    assert_eq!(page.sum("ferry_ftps_sessions_open", &[]), 0.0, "{text}");
    worker.stop(Duration::from_secs(30)).await.unwrap();
}

/// `infra/prometheus/alerts.yml` in the workspace.
fn alert_rules() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../infra/prometheus/alerts.yml")
}

#[tokio::test]
async fn a_malformed_message_is_dead_lettered_by_reason_and_raises_the_alert() {
    let fleet = Fleet::start("metrics-dead", FleetOptions::default())
        .await
        .expect("fleet");
    let mut worker = fleet
        .spawn_consuming_worker("worker", START)
        .await
        .expect("a consuming worker");
    let prometheus = PrometheusServer::start_with_rules(
        &[worker.health.expect("health address")],
        &[&alert_rules()],
    )
    .await
    .expect("prometheus");
    // The worker starts every reason's counter at zero, and Prometheus has scraped it.
    prometheus
        .query_until("ferry_dead_letters_total{reason=\"malformed\"}", RUN, |s| {
            s.len() == 1 && s[0].1 == 0.0
        })
        .await;

    let broker = fleet.broker().await.expect("broker");
    broker
        .publisher(PublisherOptions::default())
        .publish_bytes(
            "f",
            b"{\"schema_version\": 1, \"flow_id\": ",
            &Headers::new(),
        )
        .await
        .expect("publish");
    let (text, page) = scrape_until(&worker, "the dead letter", |page| {
        page.sum("ferry_dead_letters_total", &[]) >= 1.0
    })
    .await;
    assert_eq!(
        page.sum("ferry_dead_letters_total", &[("reason", "malformed")]),
        1.0,
        "{text}"
    );
    for reason in [
        "unknown_flow",
        "flow_disabled",
        "permanent_failure",
        "retries_exhausted",
    ] {
        assert_eq!(
            page.matching("ferry_dead_letters_total", &[("reason", reason)])
                .count(),
            1,
            "{reason} starts at zero\n{text}"
        );
    }
    let letter = tokio::time::timeout(RUN, async {
        loop {
            if let Some(letter) = broker.take_dead_letter().await.expect("basic.get") {
                return letter;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await
    .expect("the dead letter in its queue");
    assert_eq!(
        letter.headers.get(DEATH_KIND_HEADER).map(String::as_str),
        Some("malformed")
    );

    let alerts = prometheus
        .query_until(
            "ALERTS{alertname=\"FerryDeadLettersRising\",alertstate=\"firing\"}",
            RUN,
            |s| !s.is_empty(),
        )
        .await;
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(alerts[0].0["reason"], "malformed");
    worker.stop(Duration::from_secs(30)).await.unwrap();
}

#[tokio::test]
async fn a_restarted_scheduler_counts_its_catch_up_as_deduplicated_and_exports_the_period() {
    let fleet = Fleet::start(
        "metrics-catch-up",
        FleetOptions {
            // Daily (UTC): the catch-up tick at start is the same for both schedulers
            // unless the test runs across 03:30.
            schedule_cron: Some("0 30 3 * * *".into()),
            ..FleetOptions::default()
        },
    )
    .await
    .expect("fleet");
    let ticks = |page: &Exposition, outcome: &str| {
        page.sum(
            "ferry_schedule_ticks_total",
            &[("flow", "f"), ("offer", "catch_up"), ("outcome", outcome)],
        )
    };

    // The first scheduler finds the hour's tick unpublished (every scheduler was down).
    let mut first = fleet.spawn_scheduler("scheduler-1").expect("scheduler");
    first
        .wait_for_event(LogEvent::FlowRunPublished, START)
        .await
        .unwrap();
    let (text, page) = scrape(&first);
    assert_eq!(ticks(&page, "published"), 1.0, "{text}");
    assert_eq!(
        page.sum("ferry_flow_schedule_period_seconds", &[("flow", "f")]),
        86_400.0,
        "{text}"
    );
    first.stop(Duration::from_secs(30)).await.unwrap();

    // Restarted, it offers the same tick again: already published, deduplicated.
    let mut second = fleet.spawn_scheduler("scheduler-2").expect("scheduler");
    second
        .wait_for_event(LogEvent::SchedulerStarted, START)
        .await
        .unwrap();
    let (text, page) = scrape_until(&second, "the catch-up tick", |page| {
        page.sum("ferry_schedule_ticks_total", &[("offer", "catch_up")]) >= 1.0
    })
    .await;
    assert_eq!(ticks(&page, "deduplicated"), 1.0, "{text}");
    assert_eq!(ticks(&page, "published"), 0.0, "{text}");
    assert_eq!(
        fleet.drain_work_queue().await.len(),
        1,
        "one flow-run for the tick"
    );
    second.stop(Duration::from_secs(30)).await.unwrap();
}

#[tokio::test]
async fn a_vault_outage_between_runs_is_counted_as_a_stale_value_served() {
    let bao = OpenBao::start().await.expect("OpenBao");
    let fleet = Fleet::start("metrics-stale", FleetOptions::default())
        .await
        .expect("fleet");
    bao.write_secret(
        "secret",
        "partners/p",
        &[("password", &fleet.server.password)],
    )
    .await
    .expect("seed the password");
    fleet
        .append_settings(&format!(
            "vault:\n  address: {}\n  auth:\n    token: \"literal:{}\"\n\
             secrets:\n  cache_ttl: 1s\n  stale_grace: 10m\n",
            bao.addr, bao.root_token
        ))
        .expect("ferry.yaml");
    fleet
        .set_partner_password("vault:secret/partners/p#password")
        .expect("partner.yaml");
    fleet
        .write_local("before.xml", &noise(512, 1))
        .expect("write local file");
    let mut worker = fleet
        .spawn_consuming_worker("worker", START)
        .await
        .expect("a consuming worker");
    let successes = |runs: f64| {
        move |page: &Exposition| {
            page.sum(
                "ferry_flow_runs_total",
                &[("flow", "f"), ("outcome", "success")],
            ) >= runs
        }
    };
    fleet.publish_manual_run().await.expect("publish");
    let (text, page) = scrape_until(&worker, "the first run", successes(1.0)).await;
    let vault = [("store", "vault")];
    assert!(
        page.sum(
            "ferry_secret_resolutions_total",
            &[("store", "vault"), ("outcome", "success")]
        ) >= 1.0,
        "{text}"
    );
    assert_eq!(
        page.sum("ferry_secret_store_logins_total", &vault),
        1.0,
        "{text}"
    );
    assert_eq!(
        page.sum("ferry_secret_stale_served_total", &vault),
        0.0,
        "{text}"
    );

    // OpenBao goes away; the cached password expires (cache_ttl 1s) before the next run.
    drop(bao);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    fleet
        .write_local("after.xml", &noise(512, 2))
        .expect("write local file");
    fleet.publish_manual_run().await.expect("publish");
    let (text, page) = scrape_until(&worker, "the second run", successes(2.0)).await;
    assert!(
        page.sum("ferry_secret_stale_served_total", &vault) >= 1.0,
        "{text}"
    );
    assert_eq!(
        page.sum("ferry_secret_resolution_failures_total", &[]),
        0.0,
        "the stale value answered\n{text}"
    );
    worker.stop(Duration::from_secs(30)).await.unwrap();
}
