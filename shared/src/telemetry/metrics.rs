//! ferry's metrics: one instrumentation API (OpenTelemetry metrics), exported two ways.
//!
//! # The choice of export path
//!
//! - **OTLP push** (`opentelemetry-otlp`'s `MetricExporter`, HTTP/protobuf, on a periodic
//!   reader): the same `telemetry.otlp_endpoint` / `OTEL_EXPORTER_OTLP_*` settings as spans,
//!   `/v1/metrics` appended. Prometheus 2.47+ takes it natively (`--web.enable-otlp-receiver`,
//!   `POST /api/v1/otlp/v1/metrics`), as does any OpenTelemetry collector. Cumulative
//!   temporality (what Prometheus's receiver requires); `OTEL_METRIC_EXPORT_INTERVAL` sets the
//!   period (60 s by default).
//! - **Prometheus scrape** (`GET /metrics`): the SDK's `ManualReader`, collected on every
//!   scrape and written in the text format by `prometheus_text.rs`. Not
//!   `opentelemetry-prometheus`: it was declared discontinued at 0.29 (it depends on the
//!   unmaintained `protobuf` crate, with open advisories) and its later releases still say so
//!   and fail to build their documentation. Not `prometheus-client` either: it is maintained,
//!   but it is a second instrumentation API, and every metric would have to be declared
//!   twice or bridged. A pull reader on the one meter provider gives the scrape the same
//!   instruments as the push, and the text format is small and stable enough to write (and
//!   test) in one file.
//!
//!   `ManualReader` and the `MetricReader` trait sit behind the SDK's
//!   `experimental_metrics_custom_reader` feature: experimental, not deprecated, meaning the
//!   signatures may change in a minor release. The use is confined to `scrape.rs` (one
//!   wrapper, one `collect` call). The stable alternative (a custom exporter on a second
//!   periodic reader, refreshed by `SdkMeterProvider::force_flush` on each scrape) would
//!   push OTLP on every scrape and make a slow collector slow the scrape.
//!
//! # Names and labels
//!
//! Prometheus conventions: prefix `ferry_`, base units (seconds, bytes), `_total` on
//! counters, `_seconds` / `_bytes` in the name of what has that unit (instruments carry the
//! UCUM unit too, so the OTLP path and Prometheus's OTLP translation give the same names).
//! Labels are low-cardinality: flow, partner, direction, outcome and error kind, all from
//! configuration ids or closed enums, never a file name, a path or a run id.
//!
//! # Where they are recorded
//!
//! [`Metrics::global`] builds the instruments once, from the global meter provider that
//! [`init`](super::init) installs (a process that never called it records into a no-op
//! provider). The recording methods take labels and stable words, not the transfer engine's
//! types, so that telemetry does not depend on the engine (which depends on telemetry):
//! `transfer/metrics.rs` turns a run's final report into these calls, in one place, and
//! times each file.
//!
//! # The other instruments, by area
//!
//! This file holds the flow-run and file instruments (and the tick counter); the rest live
//! in one file per area, each with its own `global()`: [`runs`] (retries, dead letters,
//! queue lag), [`partner`] (FTPS connects, sessions, certificate expiry), [`secrets`]
//! (resolutions and their failures), [`schedule`] (flow periods, how ticks were offered),
//! [`arrival`] (runs requested by the file-arrival trigger), [`notify`] (flow webhooks).

pub mod arrival;
pub mod notify;
pub mod partner;
pub mod runs;
pub mod schedule;
pub mod secrets;

use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use opentelemetry::KeyValue;
use opentelemetry::global;
use opentelemetry::metrics::{Counter, Gauge, Histogram, UpDownCounter};

/// The OpenTelemetry instrumentation scope of every ferry instrument.
pub const METER_NAME: &str = "ferry";

/// Bucket bounds of a file's transfer, in seconds: from a small file on a LAN to an hour.
const FILE_BUCKETS: [f64; 14] = [
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 1800.0, 3600.0,
];

/// Bucket bounds of a flow-run, in seconds: up to the longest sensible run time limit.
const RUN_BUCKETS: [f64; 13] = [
    0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0,
];

/// A flow-run's outcome, the `outcome` label of the run metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunOutcome {
    /// The run ran and no file failed.
    Success,
    /// The run ran and at least one file failed.
    Failed,
    /// The run had nothing to do: a newer run of every file of the flow, started after it
    /// was requested, had settled them all (it is that run's success that counts).
    Covered,
    /// The run could not run at all (flow busy, Redis down, partner unreachable for the
    /// listing...); the `error_kind` label says why.
    NotRun,
}

impl RunOutcome {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            RunOutcome::Success => "success",
            RunOutcome::Failed => "failed",
            RunOutcome::Covered => "covered",
            RunOutcome::NotRun => "not_run",
        }
    }
}

/// What became of one offer of a cron tick to a scheduler replica, the `outcome` label of
/// `ferry_schedule_ticks_total`. A tick left pending is offered again, so a tick may count
/// more than once (for example `publish_failed`, then `published`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TickOutcome {
    /// This replica claimed the tick and RabbitMQ confirmed its flow-run.
    Published,
    /// Another replica is publishing the tick (normal with replicas).
    ClaimedElsewhere,
    /// The tick was published already (by another replica, or by this one before a
    /// restart): deduplicated, not published again.
    Deduplicated,
    /// Redis did not answer the claim: the tick is offered again.
    ClaimFailed,
    /// RabbitMQ did not confirm the flow-run in time: the tick is left pending for a retry.
    PublishFailed,
    /// A pending tick outlived its claim's life: dropped, never published.
    Expired,
}

impl TickOutcome {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            TickOutcome::Published => "published",
            TickOutcome::ClaimedElsewhere => "claimed_elsewhere",
            TickOutcome::Deduplicated => "deduplicated",
            TickOutcome::ClaimFailed => "claim_failed",
            TickOutcome::PublishFailed => "publish_failed",
            TickOutcome::Expired => "expired",
        }
    }
}

/// Every ferry instrument, created once.
#[derive(Debug)]
pub struct Metrics {
    /// `ferry_files_total{flow,partner,direction,outcome,error_kind}`.
    pub files: Counter<u64>,
    /// `ferry_transferred_bytes_total{flow,partner,direction}`.
    pub transferred_bytes: Counter<u64>,
    /// `ferry_file_transfer_duration_seconds{flow,partner,direction,outcome}`.
    pub file_duration: Histogram<f64>,
    /// `ferry_flow_runs_total{flow,outcome,error_kind}`.
    pub runs: Counter<u64>,
    /// `ferry_flow_run_duration_seconds{flow,outcome}`.
    pub run_duration: Histogram<f64>,
    /// `ferry_flow_last_success_timestamp_seconds{flow}`.
    pub last_success: Gauge<f64>,
    /// `ferry_flow_runs_in_flight{flow}`.
    pub runs_in_flight: UpDownCounter<i64>,
    /// `ferry_schedule_ticks_total{flow,outcome,offer}` (the scheduler).
    pub ticks: Counter<u64>,
}

impl Metrics {
    /// The instruments, built from the global meter provider on first use.
    pub fn global() -> &'static Metrics {
        static METRICS: OnceLock<Metrics> = OnceLock::new();
        METRICS.get_or_init(|| Metrics::new(&global::meter(METER_NAME)))
    }

    /// The instruments of `meter`.
    pub fn new(meter: &opentelemetry::metrics::Meter) -> Self {
        Metrics {
            files: meter
                .u64_counter("ferry_files_total")
                .with_description(
                    "Files a flow-run settled, by outcome (transferred, duplicate, failed, \
                     left-to-other-worker, skipped) and error kind",
                )
                .with_unit("{file}")
                .build(),
            transferred_bytes: meter
                .u64_counter("ferry_transferred_bytes_total")
                .with_description("Bytes of the files transferred")
                .with_unit("By")
                .build(),
            file_duration: meter
                .f64_histogram("ferry_file_transfer_duration_seconds")
                .with_description("Time to settle one file, attempts and retries included")
                .with_unit("s")
                .with_boundaries(FILE_BUCKETS.to_vec())
                .build(),
            runs: meter
                .u64_counter("ferry_flow_runs_total")
                .with_description(
                    "Flow-runs finished, by outcome (success, failed, covered, not_run)",
                )
                .with_unit("{run}")
                .build(),
            run_duration: meter
                .f64_histogram("ferry_flow_run_duration_seconds")
                .with_description("Wall-clock time of a flow-run, lock wait included")
                .with_unit("s")
                .with_boundaries(RUN_BUCKETS.to_vec())
                .build(),
            last_success: meter
                .f64_gauge("ferry_flow_last_success_timestamp_seconds")
                .with_description(
                    "Unix time at which the flow last finished a run with no failed file \
                     (absent until this process saw one)",
                )
                .with_unit("s")
                .build(),
            runs_in_flight: meter
                .i64_up_down_counter("ferry_flow_runs_in_flight")
                .with_description("Flow-runs running now in this process")
                .with_unit("{run}")
                .build(),
            ticks: meter
                .u64_counter("ferry_schedule_ticks_total")
                .with_description(
                    "Cron ticks offered to this scheduler replica, by outcome (published, \
                     claimed_elsewhere, deduplicated, claim_failed, publish_failed, expired) \
                     and offer (on_time, catch_up, pending)",
                )
                .with_unit("{tick}")
                .build(),
        }
    }

    /// Counts one cron tick of `flow` by what became of it and how it was offered.
    pub fn record_tick(&self, flow: &str, outcome: TickOutcome, offer: schedule::TickOffer) {
        self.ticks.add(
            1,
            &[
                KeyValue::new("flow", flow.to_owned()),
                KeyValue::new("outcome", outcome.as_str()),
                KeyValue::new("offer", offer.as_str()),
            ],
        );
    }

    /// Counts a run in flight until the returned guard is dropped.
    pub fn run_started(&self, flow: &str) -> InFlight<'_> {
        let attributes = [KeyValue::new("flow", flow.to_owned())];
        self.runs_in_flight.add(1, &attributes);
        InFlight {
            gauge: &self.runs_in_flight,
            attributes,
        }
    }

    /// Counts one settled file: `outcome` is the transfer engine's word for it,
    /// `error_kind` the stable word of its error (failed and skipped files).
    pub fn record_file(
        &self,
        labels: &[KeyValue],
        outcome: &'static str,
        error_kind: Option<&'static str>,
    ) {
        let mut attributes = labels.to_vec();
        attributes.push(KeyValue::new("outcome", outcome));
        if let Some(kind) = error_kind {
            attributes.push(KeyValue::new("error_kind", kind));
        }
        self.files.add(1, &attributes);
    }

    /// Records one file's time to settle.
    pub fn record_file_duration(
        &self,
        labels: &[KeyValue],
        outcome: &'static str,
        elapsed: Duration,
    ) {
        let mut attributes = labels.to_vec();
        attributes.push(KeyValue::new("outcome", outcome));
        self.file_duration
            .record(elapsed.as_secs_f64(), &attributes);
    }

    /// Records the end of a run: its outcome and duration; for a success, the time now as
    /// the flow's last success. `error_kind` is the error's stable word for a run that could
    /// not run.
    pub fn record_run_end(
        &self,
        flow: &str,
        outcome: RunOutcome,
        error_kind: Option<&'static str>,
        elapsed: Duration,
    ) {
        let mut attributes = vec![
            KeyValue::new("flow", flow.to_owned()),
            KeyValue::new("outcome", outcome.as_str()),
        ];
        self.run_duration.record(elapsed.as_secs_f64(), &attributes);
        if let Some(kind) = error_kind {
            attributes.push(KeyValue::new("error_kind", kind));
        }
        self.runs.add(1, &attributes);
        if outcome == RunOutcome::Success {
            let now = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs_f64();
            self.last_success
                .record(now, &[KeyValue::new("flow", flow.to_owned())]);
        }
    }
}

/// The labels every file metric of a run shares; `direction` is `upload` or `download`.
pub fn file_labels(flow: &str, partner: &str, direction: &'static str) -> Vec<KeyValue> {
    vec![
        KeyValue::new("flow", flow.to_owned()),
        KeyValue::new("partner", partner.to_owned()),
        KeyValue::new("direction", direction),
    ]
}

/// A run counted in `ferry_flow_runs_in_flight` until dropped (also when the run's future is
/// dropped: a worker shutting down, a cancelled run).
#[must_use = "the run stops counting as in flight when the guard is dropped"]
#[derive(Debug)]
pub struct InFlight<'a> {
    gauge: &'a UpDownCounter<i64>,
    attributes: [KeyValue; 1],
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.gauge.add(-1, &self.attributes);
    }
}
