//! The bounded queue between finished spans and the exporter, and the count of what it drops.
//!
//! A collector that is down, slow or black-holed must never slow or fail a transfer. The SDK's
//! `BatchSpanProcessor` already keeps export off the caller: `on_end` puts the span into a
//! bounded channel with `try_send` (never blocking) and one dedicated thread exports. But when
//! the channel is full it drops the span and only *logs* the first drop; the count is private.
//! An operator needs the number, as a metric, to know that traces are incomplete.
//!
//! [`BoundedQueue`] wraps the batch processor and keeps the books itself: a span is admitted
//! only while fewer than `max_queue_size` admitted spans are waiting or being exported; an
//! admitted span leaves the books when the export of its batch returns (successfully or not:
//! [`CountingExporter`] wraps the exporter for that). Since the batch processor's own channel
//! holds `max_queue_size` spans, it never drops an admitted span, so every dropped span is
//! dropped (and counted) here, in `ferry_telemetry_spans_dropped_total`.
//!
//! `max_queue_size` is `OTEL_BSP_MAX_QUEUE_SIZE` (2048 by default), read here and handed to
//! the batch processor explicitly so that both sides use the same bound; the other `OTEL_BSP_*`
//! variables are read by the SDK. Each export is bounded by the exporter's timeout
//! (`OTEL_EXPORTER_OTLP_TIMEOUT`, 10 s), so the queue drains again once the collector is back.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use opentelemetry::Context;
use opentelemetry::metrics::{Counter, Meter};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, Span, SpanData, SpanExporter, SpanProcessor,
};

/// The counter of spans dropped because the export queue was full.
pub const SPANS_DROPPED_METRIC: &str = "ferry_telemetry_spans_dropped_total";

/// The variable that bounds the queue (the OpenTelemetry specification's name).
const MAX_QUEUE_SIZE_VAR: &str = "OTEL_BSP_MAX_QUEUE_SIZE";

/// The specification's default bound.
const DEFAULT_MAX_QUEUE_SIZE: usize = 2048;

/// A batch span processor whose queue is bounded by admission, counting what it turns away.
#[derive(Debug)]
pub(crate) struct BoundedQueue {
    inner: BatchSpanProcessor,
    outstanding: Arc<AtomicUsize>,
    limit: usize,
    dropped: Counter<u64>,
}

impl BoundedQueue {
    /// A batch processor exporting through `exporter`, its drops counted on `meter`.
    pub(crate) fn new<E: SpanExporter + 'static>(exporter: E, meter: &Meter) -> Self {
        let limit = max_queue_size();
        let outstanding = Arc::new(AtomicUsize::new(0));
        let exporter = CountingExporter {
            inner: exporter,
            outstanding: outstanding.clone(),
        };
        let config = BatchConfigBuilder::default()
            .with_max_queue_size(limit)
            .build();
        let inner = BatchSpanProcessor::builder(exporter)
            .with_batch_config(config)
            .build();
        let dropped = meter
            .u64_counter(SPANS_DROPPED_METRIC)
            .with_description(
                "Spans dropped because the export queue was full (collector down or slow); \
                 the transfers themselves are not affected",
            )
            .with_unit("{span}")
            .build();
        // Present (at 0) from the start, so that a rate over it is defined.
        dropped.add(0, &[]);
        Self {
            inner,
            outstanding,
            limit,
            dropped,
        }
    }

    /// Takes one place in the queue, if there is one.
    fn admit(&self) -> bool {
        self.outstanding
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.limit).then_some(n + 1)
            })
            .is_ok()
    }
}

impl SpanProcessor for BoundedQueue {
    fn on_start(&self, span: &mut Span, cx: &Context) {
        self.inner.on_start(span, cx);
    }

    fn on_end(&self, span: SpanData) {
        // The batch processor ignores spans that are not sampled; so does the queue.
        if span.span_context.is_sampled() && !self.admit() {
            self.dropped.add(1, &[]);
            return;
        }
        self.inner.on_end(span);
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

/// The exporter under [`BoundedQueue`]: gives a batch's places back when its export returns.
#[derive(Debug)]
struct CountingExporter<E> {
    inner: E,
    outstanding: Arc<AtomicUsize>,
}

/// Gives `n` places back when dropped (after the export, or if it is abandoned).
struct Release {
    outstanding: Arc<AtomicUsize>,
    n: usize,
}

impl Drop for Release {
    fn drop(&mut self) {
        let n = self.n;
        // Never below zero: spans exported at shutdown may not all have been admitted here.
        let _ = self
            .outstanding
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |current| {
                Some(current.saturating_sub(n))
            });
    }
}

impl<E: SpanExporter> SpanExporter for CountingExporter<E> {
    fn export(&self, batch: Vec<SpanData>) -> impl Future<Output = OTelSdkResult> + Send {
        let release = Release {
            outstanding: self.outstanding.clone(),
            n: batch.len(),
        };
        let export = self.inner.export(batch);
        async move {
            let result = export.await;
            drop(release);
            result
        }
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

/// `OTEL_BSP_MAX_QUEUE_SIZE` when it is a positive number, else the default.
fn max_queue_size() -> usize {
    std::env::var(MAX_QUEUE_SIZE_VAR)
        .ok()
        .and_then(|value| value.trim().parse::<usize>().ok())
        .filter(|&size| size > 0)
        .unwrap_or(DEFAULT_MAX_QUEUE_SIZE)
}
