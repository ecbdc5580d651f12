//! Telemetry end to end: a trace started on the "scheduler" side continues on the "worker"
//! side through plain string headers, both spans reach an OTLP/HTTP collector, and the worker's
//! JSON log lines carry the trace id.
//!
//! The collector is `ferry_tests::otlp_collector` (a few lines of HTTP/1.1 on a free loopback
//! port); the test decodes the exporter's protobuf with `opentelemetry-proto`. Everything that needs the process-global subscriber is
//! in ONE test function, so this file works both under `cargo test` (one process for the file)
//! and under nextest (one process per test).

use std::collections::HashMap;
use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context as _, bail, ensure};
use ferry_shared::telemetry::{
    self, BoxMakeWriter, LogFormat, TelemetryError, TelemetrySettings, current_trace_id,
    inject_current_context, set_parent_from,
};
use ferry_tests::otlp_collector::{Received, start_collector};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message as _;
use tokio::sync::mpsc;

/// A log writer whose output the test reads back.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0
            .lock()
            .map_err(|_| io::Error::other("capture lock poisoned"))?
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Captured {
    /// Every JSON line written so far.
    fn json_lines(&self) -> anyhow::Result<Vec<serde_json::Value>> {
        let bytes = self.0.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
        String::from_utf8_lossy(&bytes)
            .lines()
            .map(|line| serde_json::from_str(line).with_context(|| format!("not JSON: {line}")))
            .collect()
    }
}

/// Waits until the collector has received spans named `names`; returns every span by name and
/// the `service.name` each export request announced.
async fn spans_named(
    requests: &mut mpsc::UnboundedReceiver<Received>,
    names: &[&str],
) -> anyhow::Result<(HashMap<String, Span>, Vec<String>)> {
    let mut spans = HashMap::new();
    let mut services = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while !names.iter().all(|name| spans.contains_key(*name)) {
        let Ok(Some(request)) = tokio::time::timeout_at(deadline, requests.recv()).await else {
            bail!(
                "the collector did not receive {names:?}; got {:?}",
                spans.keys()
            );
        };
        ensure!(request.path == "/v1/traces", "path {}", request.path);
        ensure!(
            request.content_type == "application/x-protobuf",
            "content type {}",
            request.content_type
        );
        let export = ExportTraceServiceRequest::decode(request.body.as_slice())?;
        for resource_spans in export.resource_spans {
            let attributes = resource_spans.resource.unwrap_or_default().attributes;
            for attribute in attributes.into_iter().filter(|a| a.key == "service.name") {
                if let Some(Value::StringValue(name)) = attribute.value.and_then(|v| v.value) {
                    services.push(name);
                }
            }
            for span in resource_spans
                .scope_spans
                .into_iter()
                .flat_map(|scope| scope.spans)
            {
                spans.insert(span.name.clone(), span);
            }
        }
    }
    Ok((spans, services))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trace_crosses_the_process_boundary_and_reaches_logs_and_the_collector()
-> anyhow::Result<()> {
    let (collector, mut requests) = start_collector().await?;
    let logs = Captured::default();
    let writer = {
        let logs = logs.clone();
        BoxMakeWriter::new(move || logs.clone())
    };
    let mut settings = TelemetrySettings::new("ferry-telemetry-test");
    settings.otlp_endpoint = Some(format!("http://{collector}"));
    settings.log_format = LogFormat::Json;
    settings.filter_env_var = None; // a developer's RUST_LOG must not change the outcome
    settings.log_writer = Some(writer);
    let guard = telemetry::init(settings)?;
    assert_eq!(
        guard.export_endpoint(),
        Some(format!("http://{collector}/v1/traces").as_str())
    );
    assert!(matches!(
        telemetry::init(TelemetrySettings::new("second")),
        Err(TelemetryError::AlreadyInitialized)
    ));

    // Scheduler side: the tick's span, and the headers that travel with the message.
    let tick = tracing::info_span!("scheduler.tick", flow = "invoices");
    let (headers, tick_trace_id) = tick.in_scope(|| (inject_current_context(), current_trace_id()));
    drop(tick);
    let tick_trace_id = tick_trace_id.context("no trace id inside the tick")?;
    assert!(headers.contains_key("traceparent"), "{headers:?}");

    // Worker side: a root span as far as this process knows, re-parented from the headers.
    let deliver = tracing::info_span!(parent: None, "worker.deliver", file = "a.csv");
    set_parent_from(&deliver, &headers);
    let worker_trace_id = deliver.in_scope(|| {
        tracing::info!(file = "a.csv", "file delivered");
        current_trace_id()
    });
    drop(deliver);
    tracing::info!("outside any span");
    assert_eq!(worker_trace_id.as_deref(), Some(tick_trace_id.as_str()));

    // Flushing blocks until the collector answered: keep it off the async workers.
    let guard = tokio::task::spawn_blocking(move || guard.flush().map(|()| guard)).await??;

    let (spans, services) =
        spans_named(&mut requests, &["scheduler.tick", "worker.deliver"]).await?;
    let tick = &spans["scheduler.tick"];
    let deliver = &spans["worker.deliver"];
    assert_eq!(hex::encode(&tick.trace_id), tick_trace_id);
    assert_eq!(deliver.trace_id, tick.trace_id, "same trace on both sides");
    assert_eq!(
        deliver.parent_span_id, tick.span_id,
        "worker span is the tick's child"
    );
    assert!(tick.parent_span_id.is_empty(), "the tick is the root");
    assert!(
        services.iter().all(|s| s == "ferry-telemetry-test") && !services.is_empty(),
        "{services:?}"
    );

    // The worker's log line names the tick's trace and the worker's span.
    let lines = logs.json_lines()?;
    let delivered = lines
        .iter()
        .find(|line| line["fields"]["message"] == "file delivered")
        .context("no 'file delivered' line")?;
    assert_eq!(delivered["trace_id"], tick_trace_id.as_str(), "{delivered}");
    assert_eq!(
        delivered["span_id"],
        hex::encode(&deliver.span_id),
        "{delivered}"
    );
    let outside = lines
        .iter()
        .find(|line| line["fields"]["message"] == "outside any span")
        .context("no 'outside any span' line")?;
    assert!(outside.get("trace_id").is_none(), "{outside}");

    // Shutting down is bounded even though the collector keeps the connection open.
    let started = std::time::Instant::now();
    tokio::task::spawn_blocking(move || drop(guard)).await?;
    assert!(started.elapsed() < telemetry::SHUTDOWN_TIMEOUT + Duration::from_secs(1));
    Ok(())
}
