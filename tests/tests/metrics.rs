//! Metrics end to end (issue 10): a real `ferry-worker consume` runs flow-runs published to
//! RabbitMQ, uploads files to a real vsftpd, and its `/metrics` endpoint is scraped over HTTP
//! as Prometheus would. What an operator would check on a dashboard:
//! - files by outcome equal the files sent (and, on a second run, the duplicates skipped);
//! - bytes transferred equal the files' sizes; one duration observation per file;
//! - the runs by outcome, the flow's last-success time, nothing left in flight;
//! - the page is the Prometheus text format (its content type, a `# TYPE` per family,
//!   `promtool check metrics` finds nothing) and carries no file name, only the
//!   low-cardinality labels;
//! - a real Prometheus scrapes the worker and answers the queries a dashboard and an alert
//!   would make;
//! - with `telemetry.otlp_endpoint` set, the same metrics reach an OTLP/HTTP collector
//!   (`/v1/metrics`), and the last values are pushed when the worker stops (Prometheus 2.42
//!   here has no OTLP receiver; the collector is `ferry_tests::otlp_collector`);
//! - two scheduler replicas serve `/metrics` on their own ports; each counts the ticks it
//!   published (as many as its "flow-run published" events) and those the other one did.
//!
//! Needs `cargo build -p ferry-worker -p ferry-scheduler` first (the binaries next to the test).

use std::collections::BTreeSet;
use std::time::{Duration, Instant, SystemTime};

use ferry_shared::broker::{Headers, PublisherOptions};
use ferry_shared::message::{FlowRunMessage, Trigger};
use ferry_shared::telemetry::LogEvent;
use ferry_tests::fleet::{Fleet, FleetOptions, FleetProcess, is_event, noise};
use ferry_tests::otlp_collector::start_collector;
use ferry_tests::prometheus::{Exposition, http_get};
use ferry_tests::prometheus_server::{PrometheusServer, promtool_check_metrics};
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::common::v1::{AnyValue as Any, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::metric::Data;
use opentelemetry_proto::tonic::metrics::v1::number_data_point::Value as Number;
use prost::Message as _;

/// How long the worker may take to connect and start consuming.
const START: Duration = Duration::from_secs(60);
/// How long a run of a few small files may take.
const RUN: Duration = Duration::from_secs(60);

/// The labels ferry's metrics may carry: nothing per file, nothing per run.
const ALLOWED_LABELS: [&str; 9] = [
    "flow",
    "partner",
    "direction",
    "outcome",
    "error_kind",
    "le",
    // Closed sets: the dead-letter reason, the secret store, how a tick was offered.
    "reason",
    "store",
    "offer",
];

/// Scrapes the worker's `/metrics`.
fn scrape(worker: &FleetProcess) -> (String, Exposition) {
    let addr = worker.health.expect("the worker's health address");
    let answer = http_get(addr, "/metrics").expect("GET /metrics");
    assert_eq!(answer.status, 200, "{}", answer.body);
    let content_type = answer
        .headers
        .get("content-type")
        .cloned()
        .unwrap_or_default();
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "the Prometheus text format's content type: {content_type:?}"
    );
    let exposition = Exposition::parse(&answer.body).expect("a valid exposition");
    (answer.body, exposition)
}

/// Scrapes until `flow` has `runs` finished runs with `outcome`.
async fn scrape_after_runs(
    worker: &FleetProcess,
    outcome: &str,
    runs: f64,
) -> (String, Exposition) {
    let deadline = Instant::now() + RUN;
    loop {
        let (text, exposition) = scrape(worker);
        let done = exposition.sum(
            "ferry_flow_runs_total",
            &[("flow", "f"), ("outcome", outcome)],
        );
        if done >= runs {
            return (text, exposition);
        }
        assert!(
            Instant::now() < deadline,
            "{runs} {outcome} run(s) not counted within {RUN:?}\n{text}\n{}",
            worker.tail(30)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn the_worker_serves_prometheus_metrics_of_its_runs_without_file_names() {
    let fleet = Fleet::start("metrics", FleetOptions::default())
        .await
        .expect("fleet");
    // Names a user would never want as a label value (one per file = a cardinality bomb).
    let names = [
        "payroll-7f3a91.xml",
        "invoice-c0ffee.xml",
        "ledger-b4d5e6.xml",
    ];
    let sizes = [10_000_usize, 20_001, 333];
    for (name, size) in names.iter().zip(sizes) {
        fleet
            .write_local(name, &noise(size, rand::random()))
            .expect("write local file");
    }
    let sent_bytes: usize = sizes.iter().sum();
    let before = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();

    let mut worker = fleet
        .spawn_consuming_worker("worker", START)
        .await
        .expect("a consuming worker");

    // Before any run: the page is served, and no run is counted.
    let (_, idle) = scrape(&worker);
    assert_eq!(idle.sum("ferry_flow_runs_total", &[]), 0.0);

    let broker = fleet.broker().await.expect("broker");
    let publisher = broker.publisher(PublisherOptions::default());
    publisher
        .publish(
            &FlowRunMessage::new("f", Trigger::Manual, None),
            &Headers::new(),
        )
        .await
        .expect("publish");
    let (text, metrics) = scrape_after_runs(&worker, "success", 1.0).await;

    assert_eq!(
        fleet.remote_names().len(),
        names.len(),
        "every file arrived"
    );
    let upload = [
        ("flow", "f"),
        ("partner", "partner"),
        ("direction", "upload"),
    ];
    let with = |extra: (&'static str, &'static str)| {
        let mut labels = upload.to_vec();
        labels.push(extra);
        labels
    };
    assert_eq!(
        metrics.sum("ferry_files_total", &with(("outcome", "transferred"))),
        names.len() as f64,
        "files transferred\n{text}"
    );
    assert_eq!(
        metrics.sum("ferry_files_total", &[]),
        names.len() as f64,
        "no other outcome\n{text}"
    );
    assert_eq!(
        metrics.sum("ferry_transferred_bytes_total", &upload),
        sent_bytes as f64,
        "bytes transferred\n{text}"
    );
    assert_eq!(
        metrics.sum(
            "ferry_file_transfer_duration_seconds_count",
            &with(("outcome", "transferred"))
        ),
        names.len() as f64,
        "one duration per file\n{text}"
    );
    assert_eq!(
        metrics.sum(
            "ferry_file_transfer_duration_seconds_bucket",
            &with(("le", "+Inf"))
        ),
        names.len() as f64
    );
    assert_eq!(
        metrics.sum("ferry_flow_run_duration_seconds_count", &[("flow", "f")]),
        1.0
    );
    let last_success = metrics.sum(
        "ferry_flow_last_success_timestamp_seconds",
        &[("flow", "f")],
    );
    let after = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(
        (before..=after).contains(&last_success),
        "last success {last_success} between {before} and {after}\n{text}"
    );
    assert_eq!(
        metrics.sum("ferry_flow_runs_in_flight", &[("flow", "f")]),
        0.0,
        "nothing in flight after the run\n{text}"
    );
    for (family, kind) in [
        ("ferry_files_total", "counter"),
        ("ferry_transferred_bytes_total", "counter"),
        ("ferry_flow_runs_total", "counter"),
        ("ferry_file_transfer_duration_seconds", "histogram"),
        ("ferry_flow_run_duration_seconds", "histogram"),
        ("ferry_flow_last_success_timestamp_seconds", "gauge"),
        ("ferry_flow_runs_in_flight", "gauge"),
    ] {
        assert_eq!(
            metrics.types.get(family).map(String::as_str),
            Some(kind),
            "{family}\n{text}"
        );
    }
    for name in names {
        let stem = name.trim_end_matches(".xml");
        assert!(
            !text.contains(stem),
            "the file name {name} is on the page\n{text}"
        );
    }
    promtool_check_metrics(&text).expect("Prometheus's linter accepts the page");
    let labels: BTreeSet<&str> = metrics
        .samples
        .iter()
        .flat_map(|s| s.labels.keys().map(String::as_str))
        .collect();
    assert!(
        labels.iter().all(|l| ALLOWED_LABELS.contains(l)),
        "labels {labels:?} beyond {ALLOWED_LABELS:?}"
    );

    // A second run finds every file already delivered: counted as duplicates, no new bytes.
    publisher
        .publish(
            &FlowRunMessage::new("f", Trigger::Manual, None),
            &Headers::new(),
        )
        .await
        .expect("publish");
    let (text, metrics) = scrape_after_runs(&worker, "success", 2.0).await;
    assert_eq!(
        metrics.sum("ferry_files_total", &with(("outcome", "duplicate"))),
        names.len() as f64,
        "duplicates skipped\n{text}"
    );
    assert_eq!(
        metrics.sum("ferry_transferred_bytes_total", &upload),
        sent_bytes as f64,
        "no byte counted twice\n{text}"
    );
    assert!(
        metrics.sum(
            "ferry_flow_last_success_timestamp_seconds",
            &[("flow", "f")]
        ) >= last_success
    );
    worker.stop(Duration::from_secs(30)).await.unwrap();
}

#[tokio::test]
async fn prometheus_scrapes_the_worker_and_answers_dashboard_and_alert_queries() {
    let fleet = Fleet::start("metrics-prom", FleetOptions::default())
        .await
        .expect("fleet");
    let sizes = [4_096_usize, 5_000];
    for (n, size) in sizes.iter().enumerate() {
        fleet
            .write_local(&format!("batch-{n}.xml"), &noise(*size, rand::random()))
            .expect("write local file");
    }
    let mut worker = fleet
        .spawn_consuming_worker("worker", START)
        .await
        .expect("a consuming worker");
    let prometheus = PrometheusServer::start(&[worker.health.expect("health address")])
        .await
        .expect("prometheus");
    prometheus
        .query_until("up{job=\"ferry\"}", RUN, |s| s.len() == 1 && s[0].1 == 1.0)
        .await;

    fleet.publish_manual_run().await.expect("publish");

    // A dashboard: files per outcome, bytes per flow.
    let by_outcome = prometheus
        .query_until(
            "sum by (outcome) (ferry_files_total{flow=\"f\"})",
            RUN,
            |s| s.iter().map(|(_, v)| v).sum::<f64>() >= 2.0,
        )
        .await;
    assert_eq!(by_outcome.len(), 1, "{by_outcome:?}");
    assert_eq!(by_outcome[0].0["outcome"], "transferred");
    assert_eq!(by_outcome[0].1, 2.0);
    let bytes = prometheus
        .query_until(
            "sum by (flow, partner) (ferry_transferred_bytes_total)",
            RUN,
            |s| !s.is_empty(),
        )
        .await;
    assert_eq!(bytes[0].0["partner"], "partner");
    assert_eq!(bytes[0].1, sizes.iter().sum::<usize>() as f64);
    // A latency panel: the histogram's quantile is within its buckets.
    let p95 = prometheus
        .query_until(
            "histogram_quantile(0.95, sum by (le) (ferry_file_transfer_duration_seconds_bucket))",
            RUN,
            |s| !s.is_empty(),
        )
        .await;
    assert!(p95[0].1 > 0.0 && p95[0].1 <= 3600.0, "{p95:?}");
    // An alert: "flow f has not succeeded for an hour" must not fire.
    let stale = prometheus
        .query_until(
            "time() - max by (flow) (ferry_flow_last_success_timestamp_seconds) > 3600",
            RUN,
            |_| true,
        )
        .await;
    assert!(stale.is_empty(), "the staleness alert fires: {stale:?}");
    let age = prometheus
        .query_until(
            "time() - ferry_flow_last_success_timestamp_seconds{flow=\"f\"}",
            RUN,
            |s| !s.is_empty(),
        )
        .await;
    assert!(age[0].1 < 120.0, "last success {}s ago", age[0].1);
    worker.stop(Duration::from_secs(30)).await.unwrap();
}

/// A string attribute's value.
fn attribute<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a str> {
    attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|Any { value }| match value {
            Some(AnyValue::StringValue(s)) => Some(s.as_str()),
            _ => None,
        })
}

/// The sum of the monotonic counter `name`'s points whose `outcome` (if given) matches.
fn counter_total(request: &ExportMetricsServiceRequest, name: &str, outcome: Option<&str>) -> i64 {
    request
        .resource_metrics
        .iter()
        .flat_map(|r| &r.scope_metrics)
        .flat_map(|s| &s.metrics)
        .filter(|m| m.name == name)
        .filter_map(|m| match &m.data {
            Some(Data::Sum(sum)) if sum.is_monotonic => Some(&sum.data_points),
            _ => None,
        })
        .flatten()
        .filter(|p| outcome.is_none_or(|o| attribute(&p.attributes, "outcome") == Some(o)))
        .map(|p| match p.value {
            Some(Number::AsInt(v)) => v,
            Some(Number::AsDouble(v)) => v as i64,
            None => 0,
        })
        .sum()
}

#[tokio::test]
async fn metrics_are_pushed_over_otlp_and_flushed_when_the_worker_stops() {
    let (collector, mut requests) = start_collector().await.expect("collector");
    let fleet = Fleet::start("metrics-otlp", FleetOptions::default())
        .await
        .expect("fleet");
    let settings = fleet.config_dir().join("ferry.yaml");
    let mut yaml = std::fs::read_to_string(&settings).expect("ferry.yaml");
    yaml.push_str(&format!(
        "telemetry:\n  otlp_endpoint: \"http://{collector}\"\n"
    ));
    std::fs::write(&settings, yaml).expect("ferry.yaml");
    let sizes = [1_234_usize, 5_678];
    for (n, size) in sizes.iter().enumerate() {
        fleet
            .write_local(&format!("pushed-{n}.xml"), &noise(*size, rand::random()))
            .expect("write local file");
    }
    let mut worker = fleet
        .spawn_consuming_worker("worker", START)
        .await
        .expect("a consuming worker");
    fleet.publish_manual_run().await.expect("publish");
    scrape_after_runs(&worker, "success", 1.0).await;
    // The export period is a minute: what arrives now is the push at shutdown.
    worker.stop(Duration::from_secs(30)).await.unwrap();

    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last = None;
    while last.is_none() {
        let remaining = deadline.saturating_duration_since(Instant::now());
        let received = tokio::time::timeout(remaining, requests.recv())
            .await
            .expect("a metrics export before the deadline")
            .expect("the collector is running");
        if received.path != "/v1/metrics" {
            continue;
        }
        assert_eq!(received.content_type, "application/x-protobuf");
        let request = ExportMetricsServiceRequest::decode(received.body.as_slice())
            .expect("an OTLP metrics request");
        if counter_total(&request, "ferry_files_total", None) > 0 {
            last = Some(request);
        }
    }
    let request = last.expect("a request with the run's metrics");
    let resource = request.resource_metrics[0]
        .resource
        .as_ref()
        .expect("a resource");
    assert_eq!(
        attribute(&resource.attributes, "service.name"),
        Some("ferry-worker")
    );
    assert_eq!(
        counter_total(&request, "ferry_files_total", Some("transferred")),
        sizes.len() as i64
    );
    assert_eq!(
        counter_total(&request, "ferry_transferred_bytes_total", None),
        sizes.iter().sum::<usize>() as i64
    );
    assert_eq!(
        counter_total(&request, "ferry_flow_runs_total", Some("success")),
        1
    );
}

#[tokio::test]
async fn two_scheduler_replicas_count_the_ticks_they_published_and_those_the_other_did() {
    let fleet = Fleet::start(
        "metrics-sched",
        FleetOptions {
            schedule_cron: Some("* * * * * *".into()),
            ..FleetOptions::default()
        },
    )
    .await
    .expect("fleet");
    let mut replicas = [
        fleet.spawn_scheduler("scheduler-1").expect("scheduler"),
        fleet.spawn_scheduler("scheduler-2").expect("scheduler"),
    ];
    for replica in &mut replicas {
        replica
            .wait_for_event(LogEvent::SchedulerStarted, START)
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_secs(4)).await;

    // Each replica counts what it did: its published ticks are its "flow-run published"
    // events (read before and after the scrape, as ticks go on), and the ticks the other
    // replica published count as claimed elsewhere. Nothing failed.
    let published_events = |replica: &FleetProcess| {
        replica
            .lines()
            .iter()
            .filter(|l| is_event(l, LogEvent::FlowRunPublished))
            .count() as f64
    };
    let mut published = 0.0;
    for replica in &replicas {
        let before = published_events(replica);
        let (text, metrics) = scrape(replica);
        let after = published_events(replica);
        let count = |outcome| {
            metrics.sum(
                "ferry_schedule_ticks_total",
                &[("flow", "f"), ("outcome", outcome)],
            )
        };
        assert_eq!(
            metrics
                .types
                .get("ferry_schedule_ticks_total")
                .map(String::as_str),
            Some("counter"),
            "{text}"
        );
        let mine = count("published");
        assert!(
            (before..=after).contains(&mine),
            "{}: {mine} published, {before}..{after} events\n{text}",
            replica.name
        );
        for failure in ["claim_failed", "publish_failed", "expired"] {
            assert_eq!(count(failure), 0.0, "{failure}\n{text}");
        }
        published += mine;
        let reached = mine + count("claimed_elsewhere") + count("deduplicated");
        assert!(reached >= 3.0, "{}: {reached} ticks\n{text}", replica.name);
    }
    assert!(published >= 3.0, "{published} ticks published in 4 s");
    for replica in &mut replicas {
        replica.stop(Duration::from_secs(30)).await.unwrap();
    }
}
