//! The spans an OTLP receiver of `otlp_collector.rs` got, decoded and indexed, so that a test
//! can follow a trace by its parent links (not only by its trace id) across processes.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::Context as _;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::Span;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use prost::Message as _;
use tokio::sync::mpsc;

use crate::otlp_collector::Received;

/// One exported span with the resource it was exported under.
#[derive(Debug, Clone)]
pub struct CollectedSpan {
    /// The span as exported.
    pub span: Span,
    /// The resource's attributes (`service.name`, `OTEL_RESOURCE_ATTRIBUTES`...).
    pub resource: Vec<KeyValue>,
}

impl CollectedSpan {
    /// The span's name.
    pub fn name(&self) -> &str {
        &self.span.name
    }

    /// The trace id, 32 lower-case hex digits.
    pub fn trace_id(&self) -> String {
        hex::encode(&self.span.trace_id)
    }

    /// The span id, 16 lower-case hex digits.
    pub fn span_id(&self) -> String {
        hex::encode(&self.span.span_id)
    }

    /// The parent's span id (empty for a root).
    pub fn parent_id(&self) -> String {
        hex::encode(&self.span.parent_span_id)
    }

    /// The span kind.
    pub fn kind(&self) -> SpanKind {
        SpanKind::try_from(self.span.kind).unwrap_or(SpanKind::Unspecified)
    }

    /// Attribute `key` as text (strings as they are, numbers and booleans printed).
    pub fn attr(&self, key: &str) -> Option<String> {
        text_of(&self.span.attributes, key)
    }

    /// Resource attribute `key` as text.
    pub fn resource_attr(&self, key: &str) -> Option<String> {
        text_of(&self.resource, key)
    }

    /// `service.name` of the process that exported it.
    pub fn service(&self) -> String {
        self.resource_attr("service.name").unwrap_or_default()
    }
}

fn text_of(attributes: &[KeyValue], key: &str) -> Option<String> {
    let value = attributes.iter().find(|kv| kv.key == key)?.value.clone()?;
    match value.value? {
        Value::StringValue(s) => Some(s),
        Value::IntValue(i) => Some(i.to_string()),
        Value::BoolValue(b) => Some(b.to_string()),
        Value::DoubleValue(d) => Some(d.to_string()),
        other => Some(format!("{other:?}")),
    }
}

/// Every span received so far, by span id; and the export requests' headers.
#[derive(Debug, Default)]
pub struct SpanIndex {
    spans: HashMap<String, CollectedSpan>,
    /// The headers of every traces export request, in arrival order.
    pub request_headers: Vec<Vec<(String, String)>>,
}

impl SpanIndex {
    /// Adds the spans of one export request (requests for other signals are skipped).
    pub fn add(&mut self, request: &Received) -> anyhow::Result<()> {
        if !request.is_traces() {
            return Ok(());
        }
        self.request_headers.push(request.headers.clone());
        let export = ExportTraceServiceRequest::decode(request.body.as_slice())
            .with_context(|| format!("decoding a traces export from {}", request.path))?;
        for resource_spans in export.resource_spans {
            let resource = resource_spans.resource.unwrap_or_default().attributes;
            for span in resource_spans
                .scope_spans
                .into_iter()
                .flat_map(|scope| scope.spans)
            {
                let collected = CollectedSpan {
                    span,
                    resource: resource.clone(),
                };
                self.spans.insert(collected.span_id(), collected);
            }
        }
        Ok(())
    }

    /// Takes every request already waiting on `requests`.
    pub fn drain(
        &mut self,
        requests: &mut mpsc::UnboundedReceiver<Received>,
    ) -> anyhow::Result<()> {
        while let Ok(request) = requests.try_recv() {
            self.add(&request)?;
        }
        Ok(())
    }

    /// Receives requests until `done` holds for the index; fails after `timeout` saying what
    /// was received.
    pub async fn receive_until(
        &mut self,
        requests: &mut mpsc::UnboundedReceiver<Received>,
        timeout: Duration,
        what: &str,
        done: impl Fn(&SpanIndex) -> bool,
    ) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + timeout;
        self.drain(requests)?;
        while !done(self) {
            match tokio::time::timeout_at(deadline, requests.recv()).await {
                Ok(Some(request)) => self.add(&request)?,
                _ => anyhow::bail!(
                    "the collector did not receive {what} within {timeout:?}; spans: {:?}",
                    self.summary()
                ),
            }
        }
        Ok(())
    }

    /// The span with `span_id`.
    pub fn get(&self, span_id: &str) -> Option<&CollectedSpan> {
        self.spans.get(span_id)
    }

    /// The parent of `span`, if it was received.
    pub fn parent(&self, span: &CollectedSpan) -> Option<&CollectedSpan> {
        self.spans.get(&span.parent_id())
    }

    /// Every span named `name`.
    pub fn named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a CollectedSpan> + 'a {
        self.spans.values().filter(move |span| span.name() == name)
    }

    /// Every span of trace `trace_id`.
    pub fn in_trace<'a>(
        &'a self,
        trace_id: &'a str,
    ) -> impl Iterator<Item = &'a CollectedSpan> + 'a {
        self.spans
            .values()
            .filter(move |span| span.trace_id() == trace_id)
    }

    /// The names of `span` and its received ancestors, from `span` up to the root.
    pub fn lineage(&self, span: &CollectedSpan) -> Vec<String> {
        let mut names = vec![span.name().to_owned()];
        let mut current = span;
        while let Some(parent) = self.parent(current) {
            names.push(parent.name().to_owned());
            current = parent;
        }
        names
    }

    /// The nearest ancestor of `span` named `name`.
    pub fn ancestor_named(&self, span: &CollectedSpan, name: &str) -> Option<&CollectedSpan> {
        let mut current = self.parent(span)?;
        loop {
            if current.name() == name {
                return Some(current);
            }
            current = self.parent(current)?;
        }
    }

    /// How many spans of each name were received, for failure messages.
    pub fn summary(&self) -> Vec<(String, usize)> {
        let mut counts: HashMap<&str, usize> = HashMap::new();
        for span in self.spans.values() {
            *counts.entry(span.name()).or_default() += 1;
        }
        let mut counts: Vec<(String, usize)> =
            counts.into_iter().map(|(n, c)| (n.to_owned(), c)).collect();
        counts.sort();
        counts
    }
}
