//! The file-arrival trigger (`arrival/`): how many runs it requested per flow, so that an
//! operator sees a burst of arrivals become a handful of runs (and a silent watch as a flat
//! line beside the files that keep arriving).

use std::sync::OnceLock;

use opentelemetry::KeyValue;
use opentelemetry::global;
use opentelemetry::metrics::{Counter, Meter};

use super::METER_NAME;

/// The arrival trigger's instruments.
#[derive(Debug)]
pub struct ArrivalMetrics {
    /// `ferry_arrival_runs_requested_total{flow}`: runs requested (and queued) because new
    /// files arrived in the flow's local folder.
    pub runs_requested: Counter<u64>,
}

impl ArrivalMetrics {
    /// The instruments, built from the global meter provider on first use.
    pub fn global() -> &'static ArrivalMetrics {
        static METRICS: OnceLock<ArrivalMetrics> = OnceLock::new();
        METRICS.get_or_init(|| ArrivalMetrics::new(&global::meter(METER_NAME)))
    }

    /// The instruments of `meter`.
    pub fn new(meter: &Meter) -> Self {
        ArrivalMetrics {
            runs_requested: meter
                .u64_counter("ferry_arrival_runs_requested_total")
                .with_description(
                    "Flow-runs queued by the file-arrival trigger (new, stable files in the \
                     flow's local folder; a burst of arrivals is one request)",
                )
                .with_unit("{run}")
                .build(),
        }
    }

    /// Counts `runs` requests of `flow`'s runs.
    pub fn record_requested(&self, flow: &str, runs: u64) {
        self.runs_requested
            .add(runs, &[KeyValue::new("flow", flow.to_owned())]);
    }
}
