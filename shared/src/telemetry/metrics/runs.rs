//! What happens to flow-runs around the engine's report: per-file retries inside a run,
//! flow-run retries through the broker's delay queues, dead letters by reason, and the
//! queue lag (from the publish of a flow-run message to the start of its run).
//!
//! Labels come from configuration ids and closed enums only. The `flow` label of the
//! broker-side metrics is recorded by the worker after it found the flow in its
//! configuration, so a message naming an unknown flow cannot mint a series; dead letters
//! carry only their `reason` (a message may be dead-lettered before anything in it can be
//! trusted, an undecodable one has no flow at all).

use std::sync::OnceLock;
use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry::global;
use opentelemetry::metrics::{Counter, Histogram, Meter};

use super::METER_NAME;

/// Bucket bounds of the queue lag, in seconds: from an idle fleet (milliseconds) to a
/// backlog of hours.
const LAG_BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0,
];

/// The run-level instruments beyond the report's counts.
#[derive(Debug)]
pub struct RunMetrics {
    /// `ferry_file_retries_total{flow,partner,direction,error_kind}`: a partner operation
    /// of a file failed transiently and is tried again within the run.
    pub file_retries: Counter<u64>,
    /// `ferry_flow_run_retries_total{flow}`: a flow-run message sent to a delay queue for
    /// a later attempt.
    pub flow_run_retries: Counter<u64>,
    /// `ferry_dead_letters_total{reason}`.
    pub dead_letters: Counter<u64>,
    /// `ferry_flow_run_queue_lag_seconds{flow}`.
    pub queue_lag: Histogram<f64>,
}

impl RunMetrics {
    /// The instruments, built from the global meter provider on first use.
    pub fn global() -> &'static RunMetrics {
        static METRICS: OnceLock<RunMetrics> = OnceLock::new();
        METRICS.get_or_init(|| RunMetrics::new(&global::meter(METER_NAME)))
    }

    /// The instruments of `meter`.
    pub fn new(meter: &Meter) -> Self {
        RunMetrics {
            file_retries: meter
                .u64_counter("ferry_file_retries_total")
                .with_description(
                    "Partner operations of a file tried again within a run after a transient \
                     error, by the error's kind",
                )
                .with_unit("{retry}")
                .build(),
            flow_run_retries: meter
                .u64_counter("ferry_flow_run_retries_total")
                .with_description(
                    "Flow-run messages sent to a delay queue for a later attempt (files that \
                     failed transiently, files held by another worker, a run that could not run)",
                )
                .with_unit("{retry}")
                .build(),
            dead_letters: meter
                .u64_counter("ferry_dead_letters_total")
                .with_description(
                    "Flow-run messages moved to the dead-letter queue, by reason (malformed, \
                     unknown_flow, flow_disabled, permanent_failure, retries_exhausted)",
                )
                .with_unit("{message}")
                .build(),
            queue_lag: meter
                .f64_histogram("ferry_flow_run_queue_lag_seconds")
                .with_description(
                    "Time from the publish of a flow-run message (or from the end of its retry \
                     delay) to the start of its run",
                )
                .with_unit("s")
                .with_boundaries(LAG_BUCKETS.to_vec())
                .build(),
        }
    }

    /// Counts one retried attempt of a file's partner operation: `labels` are the run's
    /// (`metrics::file_labels`), `error_kind` the stable word of the error that caused it.
    pub fn record_file_retry(&self, labels: &[KeyValue], error_kind: &'static str) {
        let mut attributes = labels.to_vec();
        attributes.push(KeyValue::new("error_kind", error_kind));
        self.file_retries.add(1, &attributes);
    }

    /// Counts one flow-run of a configured `flow` sent back through a delay queue.
    pub fn record_flow_run_retry(&self, flow: &str) {
        self.flow_run_retries
            .add(1, &[KeyValue::new("flow", flow.to_owned())]);
    }

    /// Starts the dead-letter counter of each of `reasons` at zero: `increase()` over a
    /// series born with its first dead letter would miss that one (and the alert with it).
    pub fn initialize_dead_letters(&self, reasons: impl IntoIterator<Item = &'static str>) {
        for reason in reasons {
            self.dead_letters.add(0, &[KeyValue::new("reason", reason)]);
        }
    }

    /// Counts one dead letter; `reason` is the stable word of the broker's closed reason.
    pub fn record_dead_letter(&self, reason: &'static str) {
        self.dead_letters.add(1, &[KeyValue::new("reason", reason)]);
    }

    /// Records how long a flow-run message of a configured `flow` waited in the queue.
    pub fn record_queue_lag(&self, flow: &str, lag: Duration) {
        self.queue_lag
            .record(lag.as_secs_f64(), &[KeyValue::new("flow", flow.to_owned())]);
    }
}
