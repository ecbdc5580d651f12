//! Flow webhooks (`notify/`): how each notification ended, per flow and event, so that an
//! operator sees a receiver that stopped answering (`failed`) or a backlog that overflowed
//! (`dropped`) without reading logs.

use std::sync::OnceLock;

use opentelemetry::KeyValue;
use opentelemetry::global;
use opentelemetry::metrics::{Counter, Meter};

use super::METER_NAME;

/// The webhook instruments.
#[derive(Debug)]
pub struct NotifyMetrics {
    /// `ferry_webhook_deliveries_total{flow,event,result}`: notifications by how they ended:
    /// `delivered` (a 2xx answer), `failed` (given up: attempts spent, a 4xx answer, an
    /// unusable URL or secret) or `dropped` (too many notifications pending in the process).
    pub deliveries: Counter<u64>,
}

impl NotifyMetrics {
    /// The instruments, built from the global meter provider on first use.
    pub fn global() -> &'static NotifyMetrics {
        static METRICS: OnceLock<NotifyMetrics> = OnceLock::new();
        METRICS.get_or_init(|| NotifyMetrics::new(&global::meter(METER_NAME)))
    }

    /// The instruments of `meter`.
    pub fn new(meter: &Meter) -> Self {
        NotifyMetrics {
            deliveries: meter
                .u64_counter("ferry_webhook_deliveries_total")
                .with_description(
                    "Flow webhook notifications by flow, event (success, failure, dead_letter) \
                     and result (delivered, failed, dropped); one per notification, whatever \
                     its number of attempts",
                )
                .with_unit("{notification}")
                .build(),
        }
    }

    /// Counts one notification of `flow` about `event` that ended as `result`.
    pub fn record(&self, flow: &str, event: &'static str, result: &'static str) {
        self.deliveries.add(
            1,
            &[
                KeyValue::new("flow", flow.to_owned()),
                KeyValue::new("event", event),
                KeyValue::new("result", result),
            ],
        );
    }
}
