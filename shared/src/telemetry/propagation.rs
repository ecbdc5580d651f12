//! Carries a trace across process boundaries as plain string headers (W3C Trace Context).
//!
//! The scheduler publishes a flow-run inside its tick's span; the worker that consumes it must
//! continue the same trace. These helpers speak only `String` maps so that the broker module can
//! copy them into and out of AMQP headers without this module knowing about lapin:
//!
//! - publisher: [`inject_current_context`] gives `traceparent` (and `tracestate` when there is
//!   one) for the current `tracing` span;
//! - consumer: create the span for the delivery, call [`set_parent_from`] with the received
//!   headers **before entering it**, then enter or instrument with it.
//!
//! They use the global propagator that [`init`](super::init) installs (W3C TraceContext); before
//! `init`, or without the OpenTelemetry layer, injection yields an empty map and extraction does
//! nothing.

use std::collections::HashMap;

use opentelemetry::global;
use opentelemetry::trace::TraceContextExt as _;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

/// The W3C Trace Context headers of the current `tracing` span: `traceparent`, and `tracestate`
/// when the trace carries vendor state. Empty outside a span or before [`init`](super::init).
pub fn inject_current_context() -> HashMap<String, String> {
    let cx = tracing::Span::current().context();
    let mut headers = HashMap::new();
    global::get_text_map_propagator(|propagator| propagator.inject_context(&cx, &mut headers));
    headers
}

/// Makes `span` a child of the remote span described by `headers` (as produced by
/// [`inject_current_context`] on the other side). Header names are matched case-insensitively;
/// any `&HashMap<String, String>`, `&BTreeMap<String, String>` or list of pairs will do.
///
/// Call it before `span` is first entered: `tracing-opentelemetry` starts the OpenTelemetry span
/// on first entry, after which its parent is fixed. Headers without a valid `traceparent` leave
/// the span where it is (child of the current span, or a new root); a failure to re-parent is
/// logged at `warn` and otherwise ignored, since losing a trace link must never fail a transfer.
pub fn set_parent_from<I, K, V>(span: &tracing::Span, headers: I)
where
    I: IntoIterator<Item = (K, V)>,
    K: AsRef<str>,
    V: AsRef<str>,
{
    // The HashMap extractor looks keys up in lower case.
    let carrier: HashMap<String, String> = headers
        .into_iter()
        .map(|(name, value)| {
            (
                name.as_ref().to_ascii_lowercase(),
                value.as_ref().to_owned(),
            )
        })
        .collect();
    let cx = global::get_text_map_propagator(|propagator| propagator.extract(&carrier));
    if !cx.span().span_context().is_valid() {
        tracing::debug!("no valid trace context in the headers; the span keeps its own parent");
        return;
    }
    if let Err(error) = span.set_parent(cx) {
        tracing::warn!(%error, "could not attach the remote trace context to the span");
    }
}

/// The trace id (32 lower-case hex digits) of the current `tracing` span, for records that should
/// point back to the trace, such as the delivery record. `None` outside a span or before
/// [`init`](super::init).
pub fn current_trace_id() -> Option<String> {
    let cx = tracing::Span::current().context();
    let span = cx.span();
    let span_context = span.span_context();
    span_context
        .is_valid()
        .then(|| span_context.trace_id().to_string())
}
