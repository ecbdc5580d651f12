//! Puts the OpenTelemetry trace id into every log line written inside a span.
//!
//! The scheduler's tick starts a trace that crosses RabbitMQ; an operator who greps the worker's
//! logs for that trace id must find every line of the flow-run. `tracing-subscriber`'s formatters
//! know nothing about OpenTelemetry, so [`TraceIdFormat`] wraps one of them: it lets the inner
//! formatter write the line into a buffer, then adds the ids of the current OpenTelemetry span:
//!
//! - JSON: `"trace_id":"<32 hex>","span_id":"<16 hex>"` as top-level fields of the object;
//! - text: ` trace_id=<32 hex> span_id=<16 hex>` at the end of the line.
//!
//! The ids come from the current OpenTelemetry context, which `tracing-opentelemetry` attaches
//! whenever a span is entered (including every poll of an `Instrument`ed future). An event with
//! an explicit `parent:` that is not the entered span therefore carries the entered span's ids.
//! Lines written outside any span are left untouched.

use std::fmt::{self, Write as _};

use opentelemetry::trace::TraceContextExt as _;
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// The ids of the current OpenTelemetry span, as lower-case hex.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SpanIds {
    /// 32 hex digits.
    pub(crate) trace_id: String,
    /// 16 hex digits.
    pub(crate) span_id: String,
}

impl SpanIds {
    /// The ids of the OpenTelemetry span attached to this thread's current context, if any.
    pub(crate) fn current() -> Option<Self> {
        let cx = opentelemetry::Context::current();
        let span = cx.span();
        let span_context = span.span_context();
        span_context.is_valid().then(|| Self {
            trace_id: span_context.trace_id().to_string(),
            span_id: span_context.span_id().to_string(),
        })
    }
}

/// How the wrapped formatter lays out a line, so the ids are added in the same syntax.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LineSyntax {
    /// One JSON object per line.
    Json,
    /// Human-readable `key=value` text.
    Text,
}

/// A [`FormatEvent`] that adds the current trace and span ids to the line of an inner formatter.
#[derive(Debug, Clone)]
pub(crate) struct TraceIdFormat<F> {
    inner: F,
    syntax: LineSyntax,
}

impl<F> TraceIdFormat<F> {
    /// Wraps `inner`, whose lines are in `syntax`.
    pub(crate) fn new(inner: F, syntax: LineSyntax) -> Self {
        Self { inner, syntax }
    }
}

impl<S, N, F> FormatEvent<S, N> for TraceIdFormat<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'w> FormatFields<'w> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let Some(ids) = SpanIds::current() else {
            return self.inner.format_event(ctx, writer, event);
        };
        let mut line = String::with_capacity(256);
        self.inner
            .format_event(ctx, Writer::new(&mut line), event)?;
        add_ids(&mut line, &ids, self.syntax);
        writer.write_str(&line)
    }
}

/// Adds `ids` to one formatted line (which normally ends with a newline).
pub(crate) fn add_ids(line: &mut String, ids: &SpanIds, syntax: LineSyntax) {
    let body_end = line.trim_end_matches(['\n', '\r']).len();
    match syntax {
        LineSyntax::Json => {
            // The inner formatter writes one object: insert before its closing brace.
            let Some(close) = line[..body_end].rfind('}') else {
                return;
            };
            let empty_object = line[..close].trim_end().ends_with('{');
            let fields = format!(
                "{}\"trace_id\":\"{}\",\"span_id\":\"{}\"",
                if empty_object { "" } else { "," },
                ids.trace_id,
                ids.span_id
            );
            line.insert_str(close, &fields);
        }
        LineSyntax::Text => {
            let mut fields = String::with_capacity(70);
            // Writing into a String cannot fail.
            let _ = write!(fields, " trace_id={} span_id={}", ids.trace_id, ids.span_id);
            line.insert_str(body_end, &fields);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids() -> SpanIds {
        SpanIds {
            trace_id: "0af7651916cd43dd8448eb211c80319c".into(),
            span_id: "b7ad6b7169203331".into(),
        }
    }

    #[test]
    fn json_ids_become_top_level_fields() {
        let mut line = "{\"level\":\"INFO\",\"fields\":{\"message\":\"hi\"}}\n".to_owned();
        add_ids(&mut line, &ids(), LineSyntax::Json);
        assert!(line.ends_with('\n'));
        let value: serde_json::Value = serde_json::from_str(&line).expect("valid JSON");
        assert_eq!(value["trace_id"], "0af7651916cd43dd8448eb211c80319c");
        assert_eq!(value["span_id"], "b7ad6b7169203331");
        assert_eq!(value["fields"]["message"], "hi");
    }

    #[test]
    fn json_empty_object_gets_no_leading_comma() {
        let mut line = "{}\n".to_owned();
        add_ids(&mut line, &ids(), LineSyntax::Json);
        let value: serde_json::Value = serde_json::from_str(&line).expect("valid JSON");
        assert_eq!(value["span_id"], "b7ad6b7169203331");
    }

    #[test]
    fn text_ids_go_before_the_newline() {
        let mut line = "2026-11-24T21:00:00Z  INFO tick: ferry: hello n=1\n".to_owned();
        add_ids(&mut line, &ids(), LineSyntax::Text);
        assert_eq!(
            line,
            "2026-11-24T21:00:00Z  INFO tick: ferry: hello n=1 \
             trace_id=0af7651916cd43dd8448eb211c80319c span_id=b7ad6b7169203331\n"
        );
    }
}
