//! Why setting up telemetry can fail, as one typed error the binaries turn into an exit code.
//!
//! Every variant is a start-up problem (bad configuration or a second initialisation): none of
//! them is worth retrying, and once [`init`](super::init) has succeeded nothing in this module
//! returns errors any more (export failures are logged by the OpenTelemetry SDK instead).

use thiserror::Error;

/// An error from [`init`](super::init) or [`TelemetryGuard::flush`](super::TelemetryGuard::flush).
#[derive(Debug, Error)]
pub enum TelemetryError {
    /// [`init`](super::init) already ran in this process; telemetry is global and installed once.
    #[error("telemetry is already initialised in this process")]
    AlreadyInitialized,

    /// Another global `tracing` subscriber or `log` logger was installed before `init`.
    #[error("could not install the global tracing subscriber: {0}")]
    SubscriberInstall(#[source] tracing_subscriber::util::TryInitError),

    /// The log filter directives (from the environment or the default) do not parse.
    #[error("invalid log filter {directives:?} (from {origin}): {source}")]
    InvalidFilter {
        /// The directives as given.
        directives: String,
        /// Where they came from: an environment variable's name or "the default filter".
        origin: String,
        /// The parser's complaint.
        #[source]
        source: tracing_subscriber::filter::ParseError,
    },

    /// An OTLP exporter (spans or metrics) could not be built (for example an endpoint that
    /// is not a URL).
    #[error("could not build the OTLP exporter for {endpoint}: {source}")]
    Exporter {
        /// The endpoint the exporter was built for (or where it came from).
        endpoint: String,
        /// The exporter builder's error.
        #[source]
        source: opentelemetry_otlp::ExporterBuildError,
    },

    /// An `OTEL_EXPORTER_OTLP_*PROTOCOL` variable names a protocol this build does not speak.
    #[error("{variable}={value:?} is not supported: expected \"http/protobuf\" or \"grpc\"")]
    UnsupportedProtocol {
        /// The variable that was set.
        variable: &'static str,
        /// Its value.
        value: String,
    },

    /// OTLP/gRPC was asked for, but `init` was called outside a tokio runtime (the gRPC
    /// channel lives on it).
    #[error("OTLP over gRPC needs telemetry to be initialised inside a tokio runtime")]
    GrpcWithoutRuntime,

    /// OTLP/gRPC to an `https://` endpoint: TLS for gRPC is not built in.
    #[error(
        "OTLP over gRPC to {endpoint} needs TLS, which this build does not speak over gRPC: \
         use OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf for https, or a plaintext (http://) \
         collector or sidecar"
    )]
    GrpcOverTls {
        /// The endpoint asked for.
        endpoint: String,
    },

    /// Flushing the span exporter failed or timed out.
    #[error("could not flush the span exporter: {0}")]
    Flush(#[source] opentelemetry_sdk::error::OTelSdkError),
}

/// A log format name that is neither `pretty` nor `json`.
#[derive(Debug, Error)]
#[error("unknown log format {0:?}: expected \"pretty\" or \"json\"")]
pub struct UnknownLogFormat(pub String);
