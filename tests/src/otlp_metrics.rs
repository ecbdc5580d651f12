//! Reading the metrics a process pushed over OTLP/HTTP to [`crate::otlp_collector`]: the
//! last `/v1/metrics` export before a deadline (a process pushes its final values when it
//! exits), and the points of one instrument in it, with their attributes as labels.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::AnyValue;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::common::v1::any_value::Value as Attribute;
use opentelemetry_proto::tonic::metrics::v1::metric::Data;
use opentelemetry_proto::tonic::metrics::v1::number_data_point::Value as Number;
use prost::Message as _;
use tokio::sync::mpsc::UnboundedReceiver;

use crate::otlp_collector::Received;

/// One data point of a sum or gauge: its attributes (string values) and its value.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    /// The point's attributes, as Prometheus labels would be.
    pub labels: BTreeMap<String, String>,
    /// Its value.
    pub value: f64,
}

/// Waits until `requests` has been quiet for `quiet` (after at least one metrics export),
/// or `within` ran out, and returns the last `/v1/metrics` export received.
pub async fn last_metrics_export(
    requests: &mut UnboundedReceiver<Received>,
    within: Duration,
    quiet: Duration,
) -> anyhow::Result<ExportMetricsServiceRequest> {
    let deadline = Instant::now() + within;
    let mut last = None;
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        let wait = if last.is_some() {
            quiet.min(remaining)
        } else {
            remaining
        };
        match tokio::time::timeout(wait, requests.recv()).await {
            Ok(Some(received)) if received.path == "/v1/metrics" => {
                let request = ExportMetricsServiceRequest::decode(received.body.as_slice())
                    .context("an OTLP metrics request")?;
                last = Some(request);
            }
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => break,
        }
        if Instant::now() >= deadline {
            break;
        }
    }
    match last {
        Some(request) => Ok(request),
        None => bail!("no metrics export within {within:?}"),
    }
}

/// The points of the sum or gauge `name` in `request`.
pub fn points(request: &ExportMetricsServiceRequest, name: &str) -> Vec<Point> {
    request
        .resource_metrics
        .iter()
        .flat_map(|r| &r.scope_metrics)
        .flat_map(|s| &s.metrics)
        .filter(|m| m.name == name)
        .flat_map(|m| match &m.data {
            Some(Data::Sum(sum)) => sum.data_points.clone(),
            Some(Data::Gauge(gauge)) => gauge.data_points.clone(),
            _ => Vec::new(),
        })
        .map(|p| Point {
            labels: labels(&p.attributes),
            value: match p.value {
                Some(Number::AsInt(v)) => v as f64,
                Some(Number::AsDouble(v)) => v,
                None => 0.0,
            },
        })
        .collect()
}

/// The sum of the points of `name` whose labels include every pair of `with`.
pub fn sum(request: &ExportMetricsServiceRequest, name: &str, with: &[(&str, &str)]) -> f64 {
    points(request, name)
        .iter()
        .filter(|p| {
            with.iter()
                .all(|(k, v)| p.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|p| p.value)
        .sum()
}

fn labels(attributes: &[KeyValue]) -> BTreeMap<String, String> {
    attributes
        .iter()
        .filter_map(|kv| match &kv.value {
            Some(AnyValue {
                value: Some(Attribute::StringValue(s)),
            }) => Some((kv.key.clone(), s.clone())),
            _ => None,
        })
        .collect()
}
