//! Where spans and metrics leave the process, and how: the OTLP endpoint and protocol, and
//! the exporters built from them.
//!
//! # Endpoint
//!
//! [`TelemetrySettings::otlp_endpoint`](super::TelemetrySettings::otlp_endpoint) when set (a
//! base URL such as `http://otel-collector:4318`), otherwise the standard
//! `OTEL_EXPORTER_OTLP_{TRACES,METRICS}_ENDPOINT` or `OTEL_EXPORTER_OTLP_ENDPOINT`, which the
//! exporter reads itself. Without any of them nothing is exported (spans still get ids, so
//! logs and propagation work without a collector).
//!
//! # Protocol
//!
//! `OTEL_EXPORTER_OTLP_{TRACES,METRICS}_PROTOCOL`, else `OTEL_EXPORTER_OTLP_PROTOCOL`, else
//! `http/protobuf` (the OpenTelemetry specification's default):
//!
//! - `http/protobuf`: `POST {endpoint}/v1/traces` (and `/v1/metrics`) with the blocking
//!   reqwest client, on the batch processor's own thread: export never runs on the async
//!   runtime. A base URL from the settings gets the signal's path appended (once).
//! - `grpc`: OTLP/gRPC through tonic (collector port 4317); the URL is used as it is. tonic's
//!   channel is built lazily on the tokio runtime that is current at [`init`](super::init)
//!   (both binaries call it inside theirs) and does its I/O there; the batch processor's thread
//!   only waits for the answer. gRPC here is plaintext (`http://`): TLS to a collector is the
//!   job of a sidecar or of `http/protobuf` over `https://`; an `https://` endpoint with
//!   `grpc` is a start-up error rather than spans lost in silence.
//!
//! `http/json` is not built in: asking for it is a start-up error naming the variable, rather
//! than a silent fall-back that would leave an operator looking for spans that never leave.
//!
//! The other standard variables (`OTEL_EXPORTER_OTLP_HEADERS`, `_TIMEOUT`, `_COMPRESSION` and
//! their per-signal forms) are read by the exporters themselves, for both protocols. The
//! timeout (10 s by default) bounds every export, including one to an endpoint that accepts
//! connections and never answers.

use std::fmt;

use opentelemetry_otlp::{MetricExporter, Protocol, SpanExporter, WithExportConfig};

use super::TelemetryError;

/// The path of the OTLP/HTTP traces endpoint, appended to a base endpoint URL.
pub const OTLP_TRACES_PATH: &str = "/v1/traces";

/// The path of the OTLP/HTTP metrics endpoint, appended to a base endpoint URL.
pub const OTLP_METRICS_PATH: &str = "/v1/metrics";

/// The generic protocol variable (each signal has its own, which wins).
const PROTOCOL_VAR: &str = "OTEL_EXPORTER_OTLP_PROTOCOL";

/// One OTLP signal: its path under a base URL and its own variables.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Signal {
    path: &'static str,
    endpoint_var: &'static str,
    protocol_var: &'static str,
}

impl Signal {
    pub(crate) const TRACES: Signal = Signal {
        path: OTLP_TRACES_PATH,
        endpoint_var: opentelemetry_otlp::OTEL_EXPORTER_OTLP_TRACES_ENDPOINT,
        protocol_var: "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
    };
    pub(crate) const METRICS: Signal = Signal {
        path: OTLP_METRICS_PATH,
        endpoint_var: opentelemetry_otlp::OTEL_EXPORTER_OTLP_METRICS_ENDPOINT,
        protocol_var: "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL",
    };
}

/// The OTLP transport of one signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OtlpProtocol {
    /// Protobuf over HTTP/1.1 (`http/protobuf`), the default.
    #[default]
    HttpProtobuf,
    /// gRPC (`grpc`).
    Grpc,
}

impl OtlpProtocol {
    /// The protocol's name in `OTEL_EXPORTER_OTLP_PROTOCOL`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::HttpProtobuf => "http/protobuf",
            Self::Grpc => "grpc",
        }
    }

    /// The signal's protocol variable, else the generic one, else the default.
    fn resolve(signal: Signal) -> Result<Self, TelemetryError> {
        let set = [signal.protocol_var, PROTOCOL_VAR]
            .into_iter()
            .find_map(|var| {
                std::env::var(var)
                    .ok()
                    .map(|value| value.trim().to_owned())
                    .filter(|value| !value.is_empty())
                    .map(|value| (var, value))
            });
        let Some((variable, value)) = set else {
            return Ok(Self::default());
        };
        Self::parse(&value).ok_or(TelemetryError::UnsupportedProtocol { variable, value })
    }

    /// The protocol a variable's value names, if this build speaks it.
    fn parse(value: &str) -> Option<Self> {
        match value.trim().to_ascii_lowercase().as_str() {
            "http/protobuf" => Some(Self::HttpProtobuf),
            "grpc" => Some(Self::Grpc),
            _ => None,
        }
    }
}

impl fmt::Display for OtlpProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a signal is exported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ExportTarget {
    /// The full URL of the signal, from the settings.
    Url(String),
    /// Left to the exporter, which reads this environment variable.
    Environment(&'static str),
}

impl fmt::Display for ExportTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Url(url) => f.write_str(url),
            Self::Environment(var) => write!(f, "${var}"),
        }
    }
}

/// How one signal is exported: to where, over what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Export {
    pub(crate) target: ExportTarget,
    pub(crate) protocol: OtlpProtocol,
}

impl Export {
    /// The settings' endpoint, else the standard environment variables, else no export; and
    /// the protocol from the environment.
    pub(crate) fn resolve(
        setting: Option<&str>,
        signal: Signal,
    ) -> Result<Option<Self>, TelemetryError> {
        Ok(Self::with_protocol(
            setting,
            signal,
            OtlpProtocol::resolve(signal)?,
        ))
    }

    /// [`Export::resolve`] with the protocol given.
    fn with_protocol(
        setting: Option<&str>,
        signal: Signal,
        protocol: OtlpProtocol,
    ) -> Option<Self> {
        let target = if let Some(base) = setting.map(str::trim).filter(|base| !base.is_empty()) {
            Some(ExportTarget::Url(match protocol {
                OtlpProtocol::HttpProtobuf => signal_url(base, signal.path),
                OtlpProtocol::Grpc => base.trim_end_matches('/').to_owned(),
            }))
        } else {
            [
                signal.endpoint_var,
                opentelemetry_otlp::OTEL_EXPORTER_OTLP_ENDPOINT,
            ]
            .into_iter()
            .find(|var| std::env::var(var).is_ok_and(|value| !value.trim().is_empty()))
            .map(ExportTarget::Environment)
        };
        target.map(|target| Self { target, protocol })
    }

    /// The span exporter for this target and protocol.
    pub(crate) fn span_exporter(&self) -> Result<SpanExporter, TelemetryError> {
        self.check_runtime()?;
        let url = self.url();
        let built = match self.protocol {
            OtlpProtocol::HttpProtobuf => at(
                SpanExporter::builder()
                    .with_http()
                    .with_protocol(Protocol::HttpBinary),
                url,
            )
            .build(),
            OtlpProtocol::Grpc => at(
                SpanExporter::builder()
                    .with_tonic()
                    .with_protocol(Protocol::Grpc),
                url,
            )
            .build(),
        };
        built.map_err(|source| self.build_error(source))
    }

    /// The metric exporter for this target and protocol.
    pub(crate) fn metric_exporter(&self) -> Result<MetricExporter, TelemetryError> {
        self.check_runtime()?;
        let url = self.url();
        let built = match self.protocol {
            OtlpProtocol::HttpProtobuf => at(
                MetricExporter::builder()
                    .with_http()
                    .with_protocol(Protocol::HttpBinary),
                url,
            )
            .build(),
            OtlpProtocol::Grpc => at(
                MetricExporter::builder()
                    .with_tonic()
                    .with_protocol(Protocol::Grpc),
                url,
            )
            .build(),
        };
        built.map_err(|source| self.build_error(source))
    }

    /// What gRPC export needs: a tokio runtime (its channel is spawned on the current one;
    /// without one, a typed error rather than tokio's panic) and a plaintext endpoint (TLS
    /// for gRPC is not built in; silently speaking plaintext to a TLS port would lose every
    /// span).
    fn check_runtime(&self) -> Result<(), TelemetryError> {
        if self.protocol != OtlpProtocol::Grpc {
            return Ok(());
        }
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(TelemetryError::GrpcWithoutRuntime);
        }
        let endpoint = match &self.target {
            ExportTarget::Url(url) => Some(url.clone()),
            ExportTarget::Environment(var) => std::env::var(var).ok(),
        };
        if let Some(endpoint) = endpoint.filter(|e| is_https(e)) {
            return Err(TelemetryError::GrpcOverTls { endpoint });
        }
        Ok(())
    }

    fn url(&self) -> Option<String> {
        match &self.target {
            ExportTarget::Url(url) => Some(url.clone()),
            ExportTarget::Environment(_) => None,
        }
    }

    fn build_error(&self, source: opentelemetry_otlp::ExporterBuildError) -> TelemetryError {
        TelemetryError::Exporter {
            endpoint: self.to_string(),
            source,
        }
    }
}

impl fmt::Display for Export {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.target, self.protocol)
    }
}

/// Whether `endpoint` asks for TLS.
fn is_https(endpoint: &str) -> bool {
    endpoint.trim().to_ascii_lowercase().starts_with("https://")
}

/// `base` with a signal's path appended, unless it already ends with it.
pub(crate) fn signal_url(base: &str, path: &str) -> String {
    let base = base.trim_end_matches('/');
    if base.ends_with(path) {
        base.to_owned()
    } else {
        format!("{base}{path}")
    }
}

/// `builder` sent to `url` when the settings give one; otherwise the exporter reads the
/// `OTEL_EXPORTER_OTLP_*` endpoint variables itself.
fn at<B: WithExportConfig>(builder: B, url: Option<String>) -> B {
    match url {
        Some(url) => builder.with_endpoint(url),
        None => builder,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signal_urls_append_the_signal_path_once() {
        let traces = |base| signal_url(base, OTLP_TRACES_PATH);
        assert_eq!(traces("http://c:4318"), "http://c:4318/v1/traces");
        assert_eq!(traces("http://c:4318/"), "http://c:4318/v1/traces");
        assert_eq!(traces("http://c:4318/v1/traces"), "http://c:4318/v1/traces");
    }

    #[test]
    fn a_configured_url_gets_the_signal_path_over_http_and_is_kept_for_grpc() {
        let target = |setting, signal, protocol| {
            Export::with_protocol(Some(setting), signal, protocol).map(|export| export.target)
        };
        assert_eq!(
            target(
                " http://c:4318 ",
                Signal::TRACES,
                OtlpProtocol::HttpProtobuf
            ),
            Some(ExportTarget::Url("http://c:4318/v1/traces".into()))
        );
        assert_eq!(
            target(
                "http://c:4318/",
                Signal::METRICS,
                OtlpProtocol::HttpProtobuf
            ),
            Some(ExportTarget::Url("http://c:4318/v1/metrics".into()))
        );
        assert_eq!(
            target("http://c:4317/", Signal::TRACES, OtlpProtocol::Grpc),
            Some(ExportTarget::Url("http://c:4317".into()))
        );
    }

    #[tokio::test]
    async fn grpc_to_a_tls_endpoint_is_refused_at_start() {
        let export = Export::with_protocol(
            Some("HTTPS://collector:4317"),
            Signal::TRACES,
            OtlpProtocol::Grpc,
        )
        .expect("export");
        assert!(matches!(
            export.span_exporter(),
            Err(TelemetryError::GrpcOverTls { .. })
        ));
        let plain = Export::with_protocol(
            Some("http://127.0.0.1:4317"),
            Signal::TRACES,
            OtlpProtocol::Grpc,
        )
        .expect("export");
        assert!(plain.span_exporter().is_ok());
    }

    #[test]
    fn protocols_parse_by_their_standard_names() {
        assert_eq!(OtlpProtocol::parse("grpc"), Some(OtlpProtocol::Grpc));
        assert_eq!(
            OtlpProtocol::parse(" HTTP/protobuf "),
            Some(OtlpProtocol::HttpProtobuf)
        );
        assert_eq!(OtlpProtocol::parse("http/json"), None);
    }
}
