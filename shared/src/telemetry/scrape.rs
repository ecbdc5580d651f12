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

    /// Every metric, now, in the Prometheus text format ([`prometheus_text::CONTENT_TYPE`]).
    /// An empty body when the provider is shut down (the process is exiting).
    pub fn render(&self) -> String {
        let mut collected = ResourceMetrics::default();
        if let Err(error) = self.0.collect(&mut collected) {
            tracing::debug!(%error, "metrics could not be collected for a scrape");
            return String::new();
        }
        prometheus_text::encode(&families(&collected))
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
