//! The scheduler's side, beyond the tick counter of `metrics.rs`: how a tick came to be
//! offered (`offer` label of `ferry_schedule_ticks_total`), and each scheduled flow's
//! period, exported so that alert rules can say "no success in N periods" for every flow
//! at once without a rule per flow (see `infra/prometheus/alerts.yml`).

use std::sync::OnceLock;
use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry::global;
use opentelemetry::metrics::{Gauge, Meter};

use super::METER_NAME;

/// How a tick came to be offered to a replica, the `offer` label of
/// `ferry_schedule_ticks_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TickOffer {
    /// Its cron time came while the scheduler ran.
    OnTime,
    /// Offered once more at start (`scheduler.catch_up: latest`): published only if no
    /// replica had published it, i.e. a tick missed while every scheduler was down.
    CatchUp,
    /// Found claimed but never published (a replica died or gave up publishing).
    Pending,
}

impl TickOffer {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            TickOffer::OnTime => "on_time",
            TickOffer::CatchUp => "catch_up",
            TickOffer::Pending => "pending",
        }
    }
}

/// The scheduler's gauges.
#[derive(Debug)]
pub struct ScheduleMetrics {
    /// `ferry_flow_schedule_period_seconds{flow}`.
    pub period: Gauge<f64>,
}

impl ScheduleMetrics {
    /// The instruments, built from the global meter provider on first use.
    pub fn global() -> &'static ScheduleMetrics {
        static METRICS: OnceLock<ScheduleMetrics> = OnceLock::new();
        METRICS.get_or_init(|| ScheduleMetrics::new(&global::meter(METER_NAME)))
    }

    /// The instruments of `meter`.
    pub fn new(meter: &Meter) -> Self {
        ScheduleMetrics {
            period: meter
                .f64_gauge("ferry_flow_schedule_period_seconds")
                .with_description(
                    "Time between the current and the next cron tick of a scheduled flow \
                     (for staleness alerts: no success in N periods)",
                )
                .with_unit("s")
                .build(),
        }
    }

    /// Sets `flow`'s period.
    pub fn record_period(&self, flow: &str, period: Duration) {
        self.period.record(
            period.as_secs_f64(),
            &[KeyValue::new("flow", flow.to_owned())],
        );
    }
}
