//! Tracing and logging for both binaries: one call at start-up, one guard to hold until exit.
//!
//! Every step of ferry is traced, from the scheduler's tick through RabbitMQ to each file, and
//! every log line written inside a span names its trace, so one id finds a flow-run in the
//! tracing back end and in the logs of every process it crossed. [`init`] installs, globally:
//!
//! - a `tracing-subscriber` registry filtered by an [`EnvFilter`] (`RUST_LOG`, else
//!   [`TelemetrySettings::default_filter`], `"info"` by default);
//! - a log layer writing to stderr, one line per event, human-readable ([`LogFormat::Pretty`])
//!   or JSON ([`LogFormat::Json`]), with the current `trace_id` and `span_id` added to every
//!   line written inside a span (see `format.rs`);
//! - a `tracing-opentelemetry` layer that turns spans into OpenTelemetry spans. They always get
//!   ids (so logs and propagation work without a collector); they are exported only when an
//!   endpoint is configured, through a batch OTLP exporter;
//! - the W3C TraceContext propagator used by [`inject_current_context`] and [`set_parent_from`].
//!
//! Records of the `log` crate (some dependencies log through it) are forwarded into the same
//! pipeline.
//!
//! # Export
//!
//! Spans are exported over OTLP (`http/protobuf` or `grpc`, see `export.rs` for the endpoint
//! and protocol rules) through a bounded queue that drops, and counts, what a collector that is
//! down cannot take (`export_queue.rs`): telemetry never slows or fails a transfer. The
//! resource (`service.name`, `OTEL_RESOURCE_ATTRIBUTES`) is in `resource.rs`. Sampling follows
//! `OTEL_TRACES_SAMPLER` / `OTEL_TRACES_SAMPLER_ARG`, which the SDK reads itself when no sampler
//! is set in code (`always_on`, `always_off`, `traceidratio`, `parentbased_always_on` (the
//! default), `parentbased_always_off`, `parentbased_traceidratio`); `tracing-opentelemetry`
//! asks the SDK's sampler for every span, so an unsampled span is neither exported nor
//! propagated as sampled, yet still has ids for the logs.
//!
//! # Quiet start-up
//!
//! The OpenTelemetry API announces `set_tracer_provider` and `set_meter_provider` with an
//! `info` event ("Global tracer provider is set..."), which `RUST_LOG=info` would print on
//! every start of every command. [`init`] sets both providers *before* it installs the
//! subscriber, so those two announcements reach no subscriber at all; the SDK's later warnings
//! and errors (a failed export) still reach the logs.
//!
//! # Metrics
//!
//! [`init`] also installs the global meter provider: a pull reader that [`Scrape::render`]
//! collects for `GET /metrics`, and, when an endpoint is configured as above, an OTLP
//! metrics exporter (`/v1/metrics`, or `OTEL_EXPORTER_OTLP_METRICS_ENDPOINT`). See
//! `metrics.rs` for the choice of export path and the instruments.

mod error;
mod event;
mod export;
mod export_queue;
mod format;
pub mod metrics;
pub mod prometheus_text;
mod propagation;
mod resource;
mod scrape;

use std::io::IsTerminal as _;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use opentelemetry::global;
use opentelemetry::metrics::MeterProvider as _;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use serde::{Deserialize, Serialize};
use tracing::Subscriber;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer, Registry};

pub use error::{TelemetryError, UnknownLogFormat};
pub use event::LogEvent;
pub use export::{OTLP_METRICS_PATH, OTLP_TRACES_PATH, OtlpProtocol};
pub use export_queue::SPANS_DROPPED_METRIC;
pub use propagation::{current_trace_id, inject_current_context, set_parent_from};
pub use scrape::Scrape;
/// The type of [`TelemetrySettings::log_writer`], re-exported so callers need not depend on
/// `tracing-subscriber` to capture logs.
pub use tracing_subscriber::fmt::writer::BoxMakeWriter;

use export::{Export, Signal};
use format::{LineSyntax, TraceIdFormat};

/// The filter used when the environment sets none: `info` and above, less the
/// OpenTelemetry SDK's start-up chatter and the Vault client's own error events for the
/// 403/404 answers that ferry reports itself, as typed errors.
pub const DEFAULT_FILTER: &str =
    "info,opentelemetry=warn,opentelemetry_sdk=warn,vaultrs=warn,rustify=off";

/// The environment variable whose directives replace the default filter.
pub const FILTER_ENV_VAR: &str = "RUST_LOG";

/// How long dropping the [`TelemetryGuard`] may wait for the last spans to be exported.
pub const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

/// The OpenTelemetry instrumentation scope of every ferry span.
const TRACER_NAME: &str = "ferry";

/// Targets whose spans must never reach the exporter: the exporter's own HTTP stack (exporting
/// a span would create spans to export, forever) and OpenTelemetry's internal diagnostics.
const EXPORTER_NOISE: [&str; 6] = ["hyper", "h2", "reqwest", "tonic", "tower", "opentelemetry"];

/// Set by the first successful [`init`]; telemetry is process-global.
static INITIALIZED: AtomicBool = AtomicBool::new(false);

/// The layout of log lines on stderr.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One human-readable line per event (`tracing-subscriber`'s "full" format), for terminals.
    #[default]
    Pretty,
    /// One JSON object per line, for log collectors; the trace id is the `trace_id` field.
    Json,
}

impl LogFormat {
    /// The format when none is asked for: JSON lines when stderr is not a terminal (a file, a
    /// pipe, a container runtime's log collector), readable text on a terminal.
    pub fn for_stderr() -> Self {
        if std::io::stderr().is_terminal() {
            Self::Pretty
        } else {
            Self::Json
        }
    }
}

impl FromStr for LogFormat {
    type Err = UnknownLogFormat;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "pretty" | "text" => Ok(Self::Pretty),
            "json" => Ok(Self::Json),
            _ => Err(UnknownLogFormat(s.to_owned())),
        }
    }
}

/// What [`init`] installs. Start from [`TelemetrySettings::new`] and override fields.
#[derive(Debug)]
pub struct TelemetrySettings {
    /// `service.name` of the exported spans, e.g. `ferry-worker`.
    pub service_name: String,
    /// Base URL of the OTLP/HTTP collector (`http://host:4318`); `None` falls back to the
    /// `OTEL_EXPORTER_OTLP_*` environment, and without those spans are not exported.
    pub otlp_endpoint: Option<String>,
    /// Layout of the log lines.
    pub log_format: LogFormat,
    /// Filter directives used when [`filter_env_var`](Self::filter_env_var) is unset or empty.
    pub default_filter: String,
    /// The environment variable that overrides the default filter (`RUST_LOG`); `None` ignores
    /// the environment (useful in tests).
    pub filter_env_var: Option<String>,
    /// Where log lines go; `None` is stderr. Tests inject a writer they can read back.
    pub log_writer: Option<BoxMakeWriter>,
}

impl TelemetrySettings {
    /// Settings for `service_name`: pretty logs on stderr, `RUST_LOG` or `info`, and export
    /// only if the `OTEL_EXPORTER_OTLP_*` environment names a collector.
    pub fn new(service_name: impl Into<String>) -> Self {
        Self {
            service_name: service_name.into(),
            otlp_endpoint: None,
            log_format: LogFormat::default(),
            default_filter: DEFAULT_FILTER.to_owned(),
            filter_env_var: Some(FILTER_ENV_VAR.to_owned()),
            log_writer: None,
        }
    }
}

/// Keeps telemetry running; dropping it exports the spans still queued (waiting at most
/// [`SHUTDOWN_TIMEOUT`]) and shuts the tracer provider down. Hold it in `main` until exit:
/// `let _telemetry = telemetry::init(settings)?;` (not `let _ = ...`, which drops at once).
#[must_use = "dropping the guard shuts span export down"]
#[derive(Debug)]
pub struct TelemetryGuard {
    provider: SdkTracerProvider,
    meters: SdkMeterProvider,
    scrape: Scrape,
    endpoint: Option<String>,
}

impl TelemetryGuard {
    /// Where spans are exported, or `None` when export is off (for a start-up log line).
    pub fn export_endpoint(&self) -> Option<&str> {
        self.endpoint.as_deref()
    }

    /// The handle that renders every metric for a `GET /metrics`.
    pub fn scrape(&self) -> Scrape {
        self.scrape.clone()
    }

    /// Exports every finished span now, blocking until the collector answered (or the SDK's
    /// five-second flush timeout). Spans still open are exported when they close.
    pub fn flush(&self) -> Result<(), TelemetryError> {
        self.provider.force_flush().map_err(TelemetryError::Flush)
    }
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Err(error) = self.meters.shutdown_with_timeout(SHUTDOWN_TIMEOUT) {
            tracing::warn!(%error, "metrics export did not shut down cleanly");
        }
        if let Err(error) = self.provider.shutdown_with_timeout(SHUTDOWN_TIMEOUT) {
            tracing::warn!(%error, "span export did not shut down cleanly; spans may be lost");
        }
    }
}

/// Installs the global subscriber, the OpenTelemetry tracer provider and the W3C TraceContext
/// propagator (see the [module documentation](self)). Call it once, early in `main`, inside the
/// tokio runtime or not; a second call returns [`TelemetryError::AlreadyInitialized`].
pub fn init(settings: TelemetrySettings) -> Result<TelemetryGuard, TelemetryError> {
    if INITIALIZED.swap(true, Ordering::SeqCst) {
        return Err(TelemetryError::AlreadyInitialized);
    }
    install(settings).inspect_err(|_| INITIALIZED.store(false, Ordering::SeqCst))
}

/// The body of [`init`], once it is known to be the first call.
fn install(settings: TelemetrySettings) -> Result<TelemetryGuard, TelemetryError> {
    let TelemetrySettings {
        service_name,
        otlp_endpoint,
        log_format,
        default_filter,
        filter_env_var,
        log_writer,
    } = settings;
    let filter = env_filter(&default_filter, filter_env_var.as_deref())?;
    let export = Export::resolve(otlp_endpoint.as_deref(), Signal::TRACES)?;
    let metrics_export = Export::resolve(otlp_endpoint.as_deref(), Signal::METRICS)?;
    let (meters, scrape) = meter_provider(&service_name, metrics_export.as_ref())?;
    let provider = tracer_provider(&service_name, export.as_ref(), &meters)?;
    let writer = log_writer.unwrap_or_else(|| BoxMakeWriter::new(std::io::stderr));

    global::set_text_map_propagator(TraceContextPropagator::new());
    // Before the subscriber: their `info` announcements must reach no log (module docs).
    global::set_tracer_provider(provider.clone());
    global::set_meter_provider(meters.clone());
    subscriber(filter, log_format, writer, &provider)
        .try_init()
        .map_err(TelemetryError::SubscriberInstall)?;

    tracing::debug!(
        service = %service_name,
        export = %export.as_ref().map_or("none".to_owned(), ToString::to_string),
        "telemetry initialised"
    );
    let endpoint = export.map(|export| export.target.to_string());
    Ok(TelemetryGuard {
        provider,
        meters,
        scrape,
        endpoint,
    })
}

/// The filter from `env_var` when it is set and not empty, else from `default`.
fn env_filter(default: &str, env_var: Option<&str>) -> Result<EnvFilter, TelemetryError> {
    let from_env = env_var.and_then(|var| {
        std::env::var(var)
            .ok()
            .filter(|value| !value.trim().is_empty())
            .map(|value| (var.to_owned(), value))
    });
    let (origin, directives) =
        from_env.unwrap_or_else(|| ("the default filter".to_owned(), default.to_owned()));
    EnvFilter::try_new(&directives).map_err(|source| TelemetryError::InvalidFilter {
        directives,
        origin,
        source,
    })
}

/// A meter provider naming `service_name`, with the scrape reader, and a periodic OTLP
/// exporter to `target` if there is one.
fn meter_provider(
    service_name: &str,
    export: Option<&Export>,
) -> Result<(SdkMeterProvider, Scrape), TelemetryError> {
    let (scrape, reader) = Scrape::new();
    let builder = SdkMeterProvider::builder()
        .with_resource(resource::resource(service_name))
        .with_reader(reader);
    let Some(export) = export else {
        return Ok((builder.build(), scrape));
    };
    let exporter = export.metric_exporter()?;
    let builder = builder.with_reader(PeriodicReader::builder(exporter).build());
    Ok((builder.build(), scrape))
}

/// A tracer provider naming `service_name`, exporting through the bounded queue to `export`
/// if there is one (its drops counted on `meters`).
fn tracer_provider(
    service_name: &str,
    export: Option<&Export>,
    meters: &SdkMeterProvider,
) -> Result<SdkTracerProvider, TelemetryError> {
    let builder = SdkTracerProvider::builder().with_resource(resource::resource(service_name));
    let Some(export) = export else {
        return Ok(builder.build());
    };
    let queue = export_queue::BoundedQueue::new(
        export.span_exporter()?,
        &meters.meter(metrics::METER_NAME),
    );
    Ok(builder.with_span_processor(queue).build())
}

/// The subscriber [`init`] installs: filter, log layer, OpenTelemetry layer.
fn subscriber(
    filter: EnvFilter,
    log_format: LogFormat,
    writer: BoxMakeWriter,
    provider: &SdkTracerProvider,
) -> impl Subscriber + for<'a> LookupSpan<'a> + Send + Sync + 'static {
    let logs = tracing_subscriber::fmt::layer()
        .with_writer(writer)
        .with_ansi(false);
    let logs = match log_format {
        LogFormat::Pretty => logs
            .map_event_format(|format| TraceIdFormat::new(format, LineSyntax::Text))
            .boxed(),
        LogFormat::Json => logs
            .json()
            .map_event_format(|format| TraceIdFormat::new(format, LineSyntax::Json))
            .boxed(),
    };
    let no_exporter_noise = EXPORTER_NOISE.into_iter().fold(
        Targets::new().with_default(LevelFilter::TRACE),
        |targets, target| targets.with_target(target, LevelFilter::OFF),
    );
    let spans = tracing_opentelemetry::layer()
        .with_tracer(provider.tracer(TRACER_NAME))
        .with_filter(no_exporter_noise);
    Registry::default().with(filter).with(logs).with(spans)
}

#[cfg(test)]
mod tests {
    use std::io;
    use std::sync::{Arc, Mutex};

    use super::*;

    /// A log writer whose output the test reads back.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().expect("capture lock").extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Captured {
        fn text(&self) -> String {
            String::from_utf8_lossy(&self.0.lock().expect("capture lock")).into_owned()
        }
    }

    #[test]
    fn log_format_parses_case_insensitively() {
        assert_eq!("JSON".parse::<LogFormat>().ok(), Some(LogFormat::Json));
        assert_eq!("pretty".parse::<LogFormat>().ok(), Some(LogFormat::Pretty));
        assert!("yaml".parse::<LogFormat>().is_err());
    }

    #[test]
    fn bad_default_filter_is_a_typed_error() {
        let error = env_filter("info,[=", None).expect_err("must not parse");
        assert!(
            matches!(error, TelemetryError::InvalidFilter { .. }),
            "{error}"
        );
    }

    /// Scoped (not global) subscriber: the pretty format carries the remote parent's trace id,
    /// and the propagation helpers see the same trace.
    #[test]
    fn pretty_lines_carry_the_remote_trace_id() {
        global::set_text_map_propagator(TraceContextPropagator::new());
        let provider = SdkTracerProvider::builder().build();
        let captured = Captured::default();
        let writer = {
            let captured = captured.clone();
            BoxMakeWriter::new(move || captured.clone())
        };
        let filter = env_filter("info", None).expect("filter");
        let subscriber = subscriber(filter, LogFormat::Pretty, writer, &provider);

        let trace_id = "0af7651916cd43dd8448eb211c80319c";
        // Header names may arrive in any case from the broker.
        let headers = std::collections::BTreeMap::from([(
            "Traceparent".to_owned(),
            format!("00-{trace_id}-b7ad6b7169203331-01"),
        )]);
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("deliver", file = "a.csv");
            set_parent_from(&span, &headers);
            span.in_scope(|| {
                tracing::info!("delivering");
                assert_eq!(current_trace_id().as_deref(), Some(trace_id));
                let injected = inject_current_context();
                let traceparent = injected.get("traceparent").expect("traceparent");
                assert!(traceparent.contains(trace_id), "{traceparent}");
                assert!(!traceparent.contains("b7ad6b7169203331"), "{traceparent}");
            });
            tracing::info!("outside");
        });

        let text = captured.text();
        let mut lines = text.lines();
        let inside = lines.next().expect("line inside the span");
        assert!(inside.contains("delivering"), "{inside}");
        assert!(
            inside.contains(&format!("trace_id={trace_id} span_id=")),
            "{inside}"
        );
        let outside = lines.next().expect("line outside the span");
        assert!(!outside.contains("trace_id="), "{outside}");
    }
}
