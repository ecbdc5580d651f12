//! A collector that is down never slows or fails a transfer (issue 10): a worker exporting
//! to a closed port, or to a port that accepts connections and never answers (the kernel's
//! backlog of a listener nobody accepts on), runs a flow of 200 files to the end, every file
//! on the partner; with `OTEL_BSP_MAX_QUEUE_SIZE=16`, the spans the queue could not hold while
//! the export hung are counted in `ferry_telemetry_spans_dropped_total` on `/metrics`.
//!
//! No timing is asserted: the proof is that the run finishes (within a generous bound) and
//! succeeds while every export would wait for the exporter's timeout.
//!
//! Needs `cargo build -p ferry-worker` first (the binary next to the test).

use std::time::Duration;

use ferry_shared::broker::{Headers, PublisherOptions};
use ferry_shared::message::{FlowRunMessage, Trigger};
use ferry_shared::telemetry::SPANS_DROPPED_METRIC;
use ferry_tests::fleet::{Fleet, FleetOptions, run_summaries};
use ferry_tests::ports::free_port;
use ferry_tests::prometheus::{Exposition, http_get};
use ferry_tests::traced_fleet::{otel_env, traced_worker, write_files};

/// How long a clean stop may take (a worker whose collector black-holes waits for the
/// exporters' shutdown timeouts).
const STOP: Duration = Duration::from_secs(30);

/// A run of 200 files by a worker whose collector is down at `endpoint` (spoken to over
/// `protocol`), with a queue of 16 spans; returns the worker's count of dropped spans after the run.
async fn run_with_collector_down(test: &str, endpoint: &str, protocol: &str) -> f64 {
    let fleet = Fleet::start(test, FleetOptions::default())
        .await
        .expect("fleet");
    let sent = write_files(&fleet, 200, 512).expect("files");
    let mut env = otel_env(endpoint, protocol);
    env.push(("OTEL_BSP_MAX_QUEUE_SIZE", "16".to_owned()));
    let (mut worker_a, health) = traced_worker(&fleet, "worker-a", &env)
        .await
        .expect("worker");
    let message = FlowRunMessage::new("f", Trigger::Manual, None);
    let broker = fleet.broker().await.expect("broker");
    broker
        .publisher(PublisherOptions::default())
        .publish(&message, &Headers::new())
        .await
        .expect("publish");
    let run_id = message.flow_run_id.to_string();
    worker_a
        .wait_for("the run's summary", Duration::from_secs(300), |lines| {
            run_summaries(lines).iter().any(|s| s.run_id == run_id)
        })
        .await
        .unwrap();
    let summary = run_summaries(&worker_a.lines())
        .into_iter()
        .find(|s| s.run_id == run_id)
        .expect("summary");
    assert_eq!(
        (summary.transferred, summary.failed),
        (200, 0),
        "{}",
        worker_a.tail(20)
    );
    let remote = fleet.remote_names();
    assert!(sent.keys().all(|name| remote.contains(name)));
    let page = http_get(health, "/metrics").expect("metrics");
    let dropped = Exposition::parse(&page.body)
        .expect("exposition")
        .sum(SPANS_DROPPED_METRIC, &[]);
    worker_a.stop(STOP).await.expect("worker stops");
    dropped
}

#[tokio::test]
async fn a_closed_collector_port_does_not_fail_a_run_of_200_files() {
    let closed = free_port();
    run_with_collector_down(
        "traces-closed",
        &format!("http://127.0.0.1:{closed}"),
        "http/protobuf",
    )
    .await;
}

#[tokio::test]
async fn a_black_holed_collector_does_not_fail_a_run_and_dropped_spans_are_counted() {
    // Accepts connections (the kernel's backlog) and never answers.
    let black_hole = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let endpoint = format!("http://{}", black_hole.local_addr().expect("address"));
    let dropped = run_with_collector_down("traces-black-hole", &endpoint, "http/protobuf").await;
    assert!(
        dropped > 0.0,
        "{SPANS_DROPPED_METRIC} must count the spans a 16-span queue could not hold"
    );
    drop(black_hole);
}

#[tokio::test]
async fn a_black_holed_grpc_collector_does_not_fail_a_run_and_dropped_spans_are_counted() {
    let black_hole = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let endpoint = format!("http://{}", black_hole.local_addr().expect("address"));
    let dropped = run_with_collector_down("traces-black-hole-grpc", &endpoint, "grpc").await;
    assert!(
        dropped > 0.0,
        "{SPANS_DROPPED_METRIC} must count the spans a 16-span queue could not hold"
    );
    drop(black_hole);
}
