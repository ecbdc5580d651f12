//! The pull side of metrics: a reader that the `/metrics` handler collects on each scrape,
//! and the conversion of what it collects into Prometheus families (see `metrics.rs` for
//! why it is the SDK's `ManualReader` and a hand-written encoder).

use std::sync::Arc;
use std::time::Duration;

use opentelemetry::{KeyValue, Value as AttributeValue};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::metrics::data::{AggregatedMetrics, Metric, MetricData, ResourceMetrics};
use opentelemetry_sdk::metrics::reader::MetricReader;
use opentelemetry_sdk::metrics::{InstrumentKind, ManualReader, Pipeline, Temporality};

use super::prometheus_text::{self, Family, Kind, Sample, Value};

/// A handle on the meter provider's pull reader: [`Scrape::render`] collects every
/// instrument now and returns the Prometheus text. Cheap to clone (one per HTTP handler).
#[derive(Debug, Clone)]
pub struct Scrape(Arc<ManualReader>);

impl Scrape {
    /// A reader with cumulative temporality (what Prometheus expects: every scrape sees the
    /// totals since the process started), and the handle that collects it.
    pub(super) fn new() -> (Self, ScrapeReader) {
        let reader = Arc::new(
            ManualReader::builder()
                .with_temporality(Temporality::Cumulative)
                .build(),
        );
        (Scrape(reader.clone()), ScrapeReader(reader))
    }

    /// Every metric, now, in the Prometheus text format ([`prometheus_text::CONTENT_TYPE`]);
    /// `None` when they cannot be collected (the provider is shut down: the process is
    /// exiting), which the endpoint answers with 503 so the scrape counts as failed rather
    /// than as an empty page.
    pub fn render(&self) -> Option<String> {
        let mut collected = ResourceMetrics::default();
        if let Err(error) = self.0.collect(&mut collected) {
            tracing::debug!(%error, "metrics could not be collected for a scrape");
            return None;
        }
        Some(prometheus_text::encode(&families(&collected)))
    }
}

/// The reader registered with the meter provider; shares its state with [`Scrape`].
#[derive(Debug)]
pub(super) struct ScrapeReader(Arc<ManualReader>);

impl MetricReader for ScrapeReader {
    fn register_pipeline(&self, pipeline: std::sync::Weak<Pipeline>) {
        self.0.register_pipeline(pipeline);
    }

    fn collect(&self, rm: &mut ResourceMetrics) -> OTelSdkResult {
        self.0.collect(rm)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.0.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.0.shutdown_with_timeout(timeout)
    }

    fn temporality(&self, kind: InstrumentKind) -> Temporality {
        self.0.temporality(kind)
    }
}

/// The collected metrics as Prometheus families, sorted by name for a stable output.
fn families(collected: &ResourceMetrics) -> Vec<Family> {
    let mut families: Vec<Family> = collected
        .scope_metrics()
        .flat_map(|scope| scope.metrics())
        .filter_map(family)
        .collect();
    families.sort_by(|a, b| a.name.cmp(&b.name));
    families
}

fn family(metric: &Metric) -> Option<Family> {
    let (kind, samples) = match metric.data() {
        AggregatedMetrics::F64(data) => samples(data, |v| v)?,
        AggregatedMetrics::U64(data) => samples(data, |v| v as f64)?,
        AggregatedMetrics::I64(data) => samples(data, |v| v as f64)?,
    };
    Some(Family {
        name: metric.name().to_owned(),
        help: metric.description().to_owned(),
        unit: metric.unit().to_owned(),
        kind,
        samples,
    })
}

/// The samples of one instrument; `None` for exponential histograms (ferry creates none).
fn samples<T: Copy>(data: &MetricData<T>, float: impl Fn(T) -> f64) -> Option<(Kind, Vec<Sample>)> {
    Some(match data {
        MetricData::Gauge(gauge) => (
            Kind::Gauge,
            gauge
                .data_points()
                .map(|p| sample(p.attributes(), Value::Number(float(p.value()))))
                .collect(),
        ),
        MetricData::Sum(sum) => (
            if sum.is_monotonic() {
                Kind::Counter
            } else {
                Kind::Gauge
            },
            sum.data_points()
                .map(|p| sample(p.attributes(), Value::Number(float(p.value()))))
                .collect(),
        ),
        MetricData::Histogram(histogram) => (
            Kind::Histogram,
            histogram
                .data_points()
                .map(|p| {
                    let value = Value::Histogram {
                        bounds: p.bounds().collect(),
                        counts: p.bucket_counts().collect(),
                        sum: float(p.sum()),
                        count: p.count(),
                    };
                    sample(p.attributes(), value)
                })
                .collect(),
        ),
        MetricData::ExponentialHistogram(_) => return None,
    })
}

fn sample<'a>(attributes: impl Iterator<Item = &'a KeyValue>, value: Value) -> Sample {
    let labels = attributes
        .map(|kv| {
            let value = match &kv.value {
                AttributeValue::String(s) => s.as_str().to_owned(),
                other => other.to_string(),
            };
            (kv.key.as_str().to_owned(), value)
        })
        .collect();
    Sample { labels, value }
}

#[cfg(test)]
mod tests {
    use opentelemetry::metrics::MeterProvider as _;
    use opentelemetry_sdk::metrics::SdkMeterProvider;

    use super::*;

    /// The SDK's instruments, through the scrape reader, as Prometheus families: counters
    /// with `_total`, up-down counters and gauges as gauges, histograms with their bounds.
    #[test]
    fn instruments_come_out_as_prometheus_families() {
        let (scrape, reader) = Scrape::new();
        let provider = SdkMeterProvider::builder().with_reader(reader).build();
        let meter = provider.meter("test");
        let labels = [KeyValue::new("flow", "f")];
        let files = meter.u64_counter("ferry_files").with_unit("{file}").build();
        files.add(2, &labels);
        files.add(1, &labels);
        let in_flight = meter.i64_up_down_counter("ferry_in_flight").build();
        in_flight.add(1, &labels);
        in_flight.add(-1, &labels);
        let last = meter
            .f64_gauge("ferry_last_timestamp")
            .with_unit("s")
            .build();
        last.record(1.5, &labels);
        let duration = meter
            .f64_histogram("ferry_duration")
            .with_unit("s")
            .with_boundaries(vec![1.0, 10.0])
            .build();
        duration.record(0.5, &labels);
        duration.record(20.0, &labels);

        let text = scrape.render().expect("collected");
        for line in [
            "# TYPE ferry_files_total counter",
            "ferry_files_total{flow=\"f\"} 3",
            "# TYPE ferry_in_flight gauge",
            "ferry_in_flight{flow=\"f\"} 0",
            "# TYPE ferry_last_timestamp_seconds gauge",
            "ferry_last_timestamp_seconds{flow=\"f\"} 1.5",
            "# TYPE ferry_duration_seconds histogram",
            "ferry_duration_seconds_bucket{flow=\"f\",le=\"1\"} 1",
            "ferry_duration_seconds_bucket{flow=\"f\",le=\"10\"} 1",
            "ferry_duration_seconds_bucket{flow=\"f\",le=\"+Inf\"} 2",
            "ferry_duration_seconds_sum{flow=\"f\"} 20.5",
            "ferry_duration_seconds_count{flow=\"f\"} 2",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }

        provider.shutdown().expect("shutdown");
        assert_eq!(scrape.render(), None, "nothing to serve after shutdown");
    }
}
