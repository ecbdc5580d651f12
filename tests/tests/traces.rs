//! One trace per flow-run, through the real binaries (issue 10, "Traces"): `ferry-scheduler`
//! (its tick, or `trigger`) and two `ferry-worker` processes, RabbitMQ, Redis and a vsftpd
//! partner, exporting to a receiver the test runs (`otlp_collector.rs`).
//!
//! What an operator would check in the tracing back end, asserted on what the receiver got:
//! - a scheduled run over OTLP/HTTP: every file's span descends, by parent links, from the
//!   run, the worker's consume, the broker publish and the scheduler's tick, one trace; the
//!   spans carry the semantic-convention attributes and kinds; the FTPS and Redis steps are
//!   under the file; `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES` and
//!   `OTEL_EXPORTER_OTLP_HEADERS` reach the receiver; the workers' stderr (a file, no
//!   `--log-format`) is JSON lines whose run lines carry the run span's `trace_id`/`span_id`;
//! - the same from `ferry-scheduler trigger` with `OTEL_EXPORTER_OTLP_PROTOCOL=grpc`;
//! - a file that failed names its error kind in `error.type` on its span;
//! - `OTEL_TRACES_SAMPLER=always_off` at the trigger: the workers (parent-based by default)
//!   export nothing of that run, and its log lines still carry a trace id;
//! - a message an upstream system published with its own `traceparent` continues that trace;
//!
//! A collector that is down is `collector_down.rs`.
//!
//! Needs `cargo build -p ferry-worker -p ferry-scheduler` first (the binaries next to the test).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use ferry_shared::broker::{Headers, PublisherOptions};
use ferry_shared::message::{FlowRunMessage, Trigger};
use ferry_tests::fleet::{Fleet, FleetOptions, FleetProcess, run_summaries};
use ferry_tests::otlp_collector::{Received, start_collector, start_grpc_collector};
use ferry_tests::ports::free_port;
use ferry_tests::span_index::{CollectedSpan, SpanIndex};
use ferry_tests::traced_fleet::{
    HEADER, RESOURCE_ATTRIBUTE, WORKER_SERVICE, as_refs, otel_env, traced_worker, write_files,
};
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use serde_json::Value;
use tokio::sync::mpsc;

/// How long a process may take to connect and start consuming or ticking.
const START: Duration = Duration::from_secs(60);
/// How long a clean stop may take.
const STOP: Duration = Duration::from_secs(30);
/// How long the spans of stopped (flushed) processes may take to arrive.
const ARRIVE: Duration = Duration::from_secs(30);
/// How long the files of a run may take to reach the partner.
const DELIVER: Duration = Duration::from_secs(120);

/// A consuming worker exporting with `env`.
async fn worker(
    fleet: &Fleet,
    name: &str,
    env: &[(&'static str, String)],
) -> (FleetProcess, SocketAddr) {
    traced_worker(fleet, name, env).await.expect("worker")
}

/// Waits until every file in `sent` is on the partner.
async fn wait_delivered(fleet: &Fleet, sent: &BTreeMap<String, u64>, processes: &[&FleetProcess]) {
    ferry_tests::traced_fleet::wait_delivered(fleet, sent, processes, DELIVER)
        .await
        .unwrap();
}

/// The transferred file spans of `name`.
fn transferred<'a>(index: &'a SpanIndex, name: &'a str) -> Vec<&'a CollectedSpan> {
    index
        .named("file")
        .filter(|span| span.attr("file.name").as_deref() == Some(name))
        .filter(|span| span.attr("outcome").as_deref() == Some("transferred"))
        .collect()
}

/// Receives spans until each sent file has a transferred span whose lineage reaches `root`.
async fn receive_traces(
    index: &mut SpanIndex,
    requests: &mut mpsc::UnboundedReceiver<Received>,
    sent: &BTreeMap<String, u64>,
    root: &str,
) {
    index
        .receive_until(requests, ARRIVE, "every file's trace", |index| {
            sent.keys().all(|name| {
                transferred(index, name)
                    .iter()
                    .any(|span| index.lineage(span).last().map(String::as_str) == Some(root))
            })
        })
        .await
        .unwrap();
}

/// The assertions both end-to-end traces share: each file's span descends from the run, the
/// consume, the publish and `root`, all in one trace, with the attributes and kinds of the
/// semantic conventions, and the FTPS and Redis steps under it. Returns the trace ids.
fn assert_one_trace_per_run(
    fleet: &Fleet,
    index: &SpanIndex,
    sent: &BTreeMap<String, u64>,
    root: &str,
) -> Vec<String> {
    let mut traces = Vec::new();
    for (name, size) in sent {
        let files = transferred(index, name);
        assert_eq!(files.len(), 1, "{name}: one transferred file span");
        let file = files[0];
        let lineage = index.lineage(file);
        assert_eq!(
            lineage,
            [
                "file",
                "flow_run",
                "worker.flow_run",
                "broker.publish",
                root
            ],
            "{name}: the file span's parent chain"
        );
        assert_eq!(file.attr("file.size"), Some(size.to_string()), "{name}");
        assert_eq!(file.service(), WORKER_SERVICE, "{name}");
        assert_eq!(
            file.resource_attr(RESOURCE_ATTRIBUTE.0).as_deref(),
            Some(RESOURCE_ATTRIBUTE.1),
            "OTEL_RESOURCE_ATTRIBUTES"
        );
        let trace = file.trace_id();
        let run = index.parent(file).expect("run span");
        let consume = index.parent(run).expect("consume span");
        let publish = index.parent(consume).expect("publish span");
        let start = index.parent(publish).expect("root span");
        for span in [run, consume, publish, start] {
            assert_eq!(span.trace_id(), trace, "{}: same trace", span.name());
        }
        assert_eq!(run.attr("flow.id").as_deref(), Some("f"));

        assert_eq!(consume.kind(), SpanKind::Consumer);
        assert_eq!(
            consume.attr("messaging.system").as_deref(),
            Some("rabbitmq")
        );
        assert_eq!(
            consume.attr("messaging.operation.name").as_deref(),
            Some("process")
        );
        assert_eq!(
            consume.attr("messaging.destination.name"),
            Some(format!("{}.flow-runs.work", fleet.exchange_prefix))
        );

        assert_eq!(publish.kind(), SpanKind::Producer);
        assert_eq!(
            publish.attr("messaging.system").as_deref(),
            Some("rabbitmq")
        );
        assert_eq!(
            publish.attr("messaging.operation.name").as_deref(),
            Some("publish")
        );
        assert_eq!(
            publish.attr("messaging.destination.name"),
            Some(format!("{}.flow-runs", fleet.exchange_prefix))
        );
        assert_eq!(publish.attr("server.address").as_deref(), Some("127.0.0.1"));
        assert_eq!(publish.attr("server.port").as_deref(), Some("5672"));
        assert_eq!(publish.service(), "ferry-scheduler");
        assert_eq!(start.service(), "ferry-scheduler");

        // The steps under the file: the Redis claim and record, the FTPS upload and rename.
        let under_file = |step: &'static str| -> Vec<&CollectedSpan> {
            index
                .named(step)
                .filter(|span| {
                    index
                        .ancestor_named(span, "file")
                        .is_some_and(|f| f.span_id() == file.span_id())
                })
                .collect()
        };
        for step in ["idempotency.claim", "idempotency.record_delivery"] {
            let spans = under_file(step);
            assert!(!spans.is_empty(), "{name}: no {step} under the file span");
            for span in spans {
                assert_eq!(span.kind(), SpanKind::Client, "{step}");
                assert_eq!(span.attr("db.system.name").as_deref(), Some("redis"));
            }
        }
        for step in ["ftps_upload", "ftps_rename"] {
            let spans = under_file(step);
            assert!(!spans.is_empty(), "{name}: no {step} under the file span");
            for span in spans {
                assert_eq!(span.kind(), SpanKind::Client, "{step}");
                assert_eq!(span.attr("server.address"), Some(fleet.server.host.clone()));
                assert_eq!(
                    span.attr("server.port"),
                    Some(fleet.server.port.to_string())
                );
            }
        }
        // The FTPS sessions the run opened.
        let connects: Vec<&CollectedSpan> = index
            .named("ftps_connect")
            .filter(|span| span.trace_id() == trace)
            .collect();
        assert!(!connects.is_empty(), "no ftps_connect in the run's trace");
        for connect in connects {
            assert_eq!(connect.kind(), SpanKind::Client);
            assert_eq!(
                connect.attr("server.address"),
                Some(fleet.server.host.clone())
            );
            assert_eq!(
                connect.attr("server.port"),
                Some(fleet.server.port.to_string())
            );
            assert!(
                index
                    .ancestor_named(connect, "flow_run")
                    .is_some_and(|r| r.span_id() == run.span_id()),
                "ftps_connect outside the run: {:?}",
                index.lineage(connect)
            );
        }
        traces.push(trace);
    }
    traces.sort();
    traces.dedup();
    traces
}

/// Every traces export carried the header of `OTEL_EXPORTER_OTLP_HEADERS`.
fn assert_header_sent(index: &SpanIndex) {
    assert!(!index.request_headers.is_empty());
    for headers in &index.request_headers {
        assert!(
            headers.iter().any(|(n, v)| n == HEADER.0 && v == HEADER.1),
            "an export without {HEADER:?}: {headers:?}"
        );
    }
}

/// The worker's stderr (a file; no `--log-format` given) is JSON lines, and every line written
/// inside a run carries that run's trace id and a span id; the run's summary line carries the
/// run span's own ids.
fn assert_run_lines_carry_ids(worker: &FleetProcess, index: &SpanIndex) {
    let text = worker.log_text();
    let lines: Vec<Value> = text
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|_| panic!("not JSON: {line}")))
        .collect();
    let mut run_lines = 0;
    for line in &lines {
        let in_run = line["spans"]
            .as_array()
            .is_some_and(|spans| spans.iter().any(|s| s["name"] == "flow_run"));
        if !in_run {
            continue;
        }
        run_lines += 1;
        let trace = line["trace_id"]
            .as_str()
            .unwrap_or_else(|| panic!("no trace_id: {line}"));
        assert_eq!(line["span_id"].as_str().map(str::len), Some(16), "{line}");
        assert!(
            index.in_trace(trace).next().is_some(),
            "unknown trace: {line}"
        );
    }
    if run_lines == 0 {
        return; // This worker ran nothing.
    }
    for summary in run_summaries(&lines) {
        let line = lines
            .iter()
            .find(|l| {
                l["fields"]["message"]
                    .as_str()
                    .is_some_and(|m| m.contains(&summary.run_id))
            })
            .expect("summary line");
        let run = index
            .named("flow_run")
            .find(|span| span.attr("run.id").as_deref() == Some(summary.run_id.as_str()))
            .unwrap_or_else(|| panic!("no flow_run span for run {}", summary.run_id));
        assert_eq!(line["trace_id"].as_str(), Some(run.trace_id().as_str()));
        assert_eq!(line["span_id"].as_str(), Some(run.span_id().as_str()));
    }
}

#[tokio::test]
async fn a_scheduled_run_is_one_trace_from_the_tick_to_every_file() {
    let (collector, mut requests) = start_collector().await.unwrap();
    let fleet = Fleet::start(
        "traces-http",
        FleetOptions {
            schedule_cron: Some("* * * * * *".into()),
            ..FleetOptions::default()
        },
    )
    .await
    .expect("fleet");
    let sent = write_files(&fleet, 4, 8 * 1024).expect("files");
    let env = otel_env(&format!("http://{collector}"), "http/protobuf");
    let (mut worker_a, _) = worker(&fleet, "worker-a", &env).await;
    let (mut worker_b, _) = worker(&fleet, "worker-b", &env).await;
    let metrics = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let mut scheduler = fleet
        .spawn_with_env(
            "scheduler",
            "ferry-scheduler",
            &["--metrics-listen", &metrics.to_string()],
            &as_refs(&env),
        )
        .expect("scheduler");
    wait_delivered(&fleet, &sent, &[&worker_a, &worker_b, &scheduler]).await;
    // Stopping flushes each process's spans.
    scheduler.stop(STOP).await.expect("scheduler stops");
    worker_a.stop(STOP).await.expect("worker a stops");
    worker_b.stop(STOP).await.expect("worker b stops");

    let mut index = SpanIndex::default();
    receive_traces(&mut index, &mut requests, &sent, "scheduler.tick").await;
    let traces = assert_one_trace_per_run(&fleet, &index, &sent, "scheduler.tick");
    for trace in &traces {
        let ticks = index
            .in_trace(trace)
            .filter(|span| span.name() == "scheduler.tick")
            .count();
        assert_eq!(ticks, 1, "one tick per trace");
    }
    assert_header_sent(&index);
    for worker in [&worker_a, &worker_b] {
        assert_run_lines_carry_ids(worker, &index);
    }
}

#[tokio::test]
async fn a_triggered_run_exported_over_grpc_is_one_trace() {
    let (collector, mut requests) = start_grpc_collector().await.unwrap();
    let fleet = Fleet::start("traces-grpc", FleetOptions::default())
        .await
        .expect("fleet");
    let sent = write_files(&fleet, 3, 4 * 1024).expect("files");
    let env = otel_env(&format!("http://{collector}"), "grpc");
    let (mut worker_a, _) = worker(&fleet, "worker-a", &env).await;
    let (mut worker_b, _) = worker(&fleet, "worker-b", &env).await;
    let mut trigger = fleet
        .spawn_with_env(
            "trigger",
            "ferry-scheduler",
            &["trigger", "--flow", "f"],
            &as_refs(&env),
        )
        .expect("trigger");
    let status = trigger.wait_exit(START).await.expect("trigger exits");
    assert!(status.success(), "trigger: {}", trigger.tail(20));
    wait_delivered(&fleet, &sent, &[&worker_a, &worker_b]).await;
    worker_a.stop(STOP).await.expect("worker a stops");
    worker_b.stop(STOP).await.expect("worker b stops");

    let mut index = SpanIndex::default();
    receive_traces(&mut index, &mut requests, &sent, "scheduler.trigger").await;
    let traces = assert_one_trace_per_run(&fleet, &index, &sent, "scheduler.trigger");
    assert_eq!(traces.len(), 1, "one triggered run, one trace");
    assert_header_sent(&index);
}

#[tokio::test]
async fn the_samplers_decision_follows_the_run_across_rabbitmq() {
    let (collector, mut requests) = start_collector().await.unwrap();
    let fleet = Fleet::start("traces-sampler", FleetOptions::default())
        .await
        .expect("fleet");
    let sent = write_files(&fleet, 2, 1024).expect("files");
    let env = otel_env(&format!("http://{collector}"), "http/protobuf");
    // The workers keep the default sampler (parentbased_always_on): they follow the parent.
    let (mut worker_a, _) = worker(&fleet, "worker-a", &env).await;
    let mut trigger_env = as_refs(&env);
    trigger_env.push(("OTEL_TRACES_SAMPLER", "always_off"));
    let mut trigger = fleet
        .spawn_with_env(
            "trigger",
            "ferry-scheduler",
            &["trigger", "--flow", "f"],
            &trigger_env,
        )
        .expect("trigger");
    let status = trigger.wait_exit(START).await.expect("trigger exits");
    assert!(status.success(), "trigger: {}", trigger.tail(20));
    wait_delivered(&fleet, &sent, &[&worker_a]).await;
    // Stopping flushes: whatever the worker would export has been received when it exits.
    worker_a.stop(STOP).await.expect("worker stops");

    let mut index = SpanIndex::default();
    index.drain(&mut requests).unwrap();
    let run_spans: Vec<String> = [
        "scheduler.trigger",
        "broker.publish",
        "worker.flow_run",
        "flow_run",
        "file",
    ]
    .into_iter()
    .filter(|name| index.named(name).next().is_some())
    .map(str::to_owned)
    .collect();
    assert!(
        run_spans.is_empty(),
        "an unsampled run exported {run_spans:?}"
    );
    // Not sampled, yet traced: the run's log lines still carry one trace id.
    let lines = worker_a.lines();
    let summary = lines
        .iter()
        .find(|l| {
            l["fields"]["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("flow f run "))
        })
        .expect("summary line");
    assert_eq!(
        summary["trace_id"].as_str().map(str::len),
        Some(32),
        "{summary}"
    );
}

#[tokio::test]
async fn an_upstream_publishers_traceparent_is_continued() {
    let (collector, mut requests) = start_collector().await.unwrap();
    let fleet = Fleet::start("traces-upstream", FleetOptions::default())
        .await
        .expect("fleet");
    let sent = write_files(&fleet, 1, 1024).expect("files");
    let env = otel_env(&format!("http://{collector}"), "http/protobuf");
    let (mut worker_a, _) = worker(&fleet, "worker-a", &env).await;

    // An upstream system publishes the flow-run itself, inside its own trace.
    let upstream_trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let upstream_span = "00f067aa0ba902b7";
    let headers = Headers::from([(
        "traceparent".to_owned(),
        format!("00-{upstream_trace}-{upstream_span}-01"),
    )]);
    let message = FlowRunMessage::new(
        "f",
        Trigger::Event {
            upstream_id: "upstream-1".into(),
        },
        None,
    );
    let broker = fleet.broker().await.expect("broker");
    broker
        .publisher(PublisherOptions::default())
        .publish_bytes("f", &message.encode().expect("encode"), &headers)
        .await
        .expect("publish");
    wait_delivered(&fleet, &sent, &[&worker_a]).await;
    worker_a.stop(STOP).await.expect("worker stops");

    let mut index = SpanIndex::default();
    index
        .receive_until(&mut requests, ARRIVE, "the consume span", |index| {
            index.named("worker.flow_run").next().is_some()
                && !transferred(index, "trace000.xml").is_empty()
        })
        .await
        .unwrap();
    let consume = index.named("worker.flow_run").next().expect("consume span");
    assert_eq!(consume.trace_id(), upstream_trace, "the upstream's trace");
    assert_eq!(
        consume.parent_id(),
        upstream_span,
        "a child of the upstream's span"
    );
    let file = &transferred(&index, "trace000.xml")[0];
    assert_eq!(file.trace_id(), upstream_trace);
    assert_eq!(
        index.lineage(file),
        ["file", "flow_run", "worker.flow_run"],
        "the rest of the chain is the upstream's"
    );
}

#[tokio::test]
async fn a_failed_file_names_its_error_kind_on_its_span() {
    let (collector, mut requests) = start_collector().await.unwrap();
    let fleet = Fleet::start(
        "traces-error",
        FleetOptions {
            partner_password: Some("not-the-password".into()),
            max_attempts: 1,
            file_attempts: 1,
            ..FleetOptions::default()
        },
    )
    .await
    .expect("fleet");
    write_files(&fleet, 1, 1024).expect("files");
    let env = otel_env(&format!("http://{collector}"), "http/protobuf");
    let (mut worker_a, _) = worker(&fleet, "worker-a", &env).await;
    let message = FlowRunMessage::new("f", Trigger::Manual, None);
    let broker = fleet.broker().await.expect("broker");
    broker
        .publisher(PublisherOptions::default())
        .publish(&message, &Headers::new())
        .await
        .expect("publish");
    let run_id = message.flow_run_id.to_string();
    worker_a
        .wait_for("the run's summary", START, |lines| {
            run_summaries(lines).iter().any(|s| s.run_id == run_id)
        })
        .await
        .unwrap();
    worker_a.stop(STOP).await.expect("worker stops");

    let mut index = SpanIndex::default();
    index
        .receive_until(&mut requests, ARRIVE, "the failed file's span", |index| {
            index
                .named("file")
                .any(|span| span.attr("outcome").as_deref() == Some("failed"))
        })
        .await
        .unwrap();
    let file = index
        .named("file")
        .find(|span| span.attr("outcome").as_deref() == Some("failed"))
        .expect("failed file span");
    assert_eq!(
        file.attr("error.type").as_deref(),
        Some("authentication_failed"),
        "{:?}",
        file.span.attributes
    );
}
