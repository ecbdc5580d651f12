//! The `telemetry:` section of `ferry.yaml`: where spans and metrics are exported (OTLP)
//! and under which `service.name`. Both fall back to the standard OpenTelemetry variables,
//! so an operator's usual `OTEL_*` environment works unchanged.
//!
//! ```yaml
//! telemetry:
//!   otlp_endpoint: http://collector:4318   # else OTEL_EXPORTER_OTLP_ENDPOINT; none: no export
//!   service_name: ferry-worker-eu          # else OTEL_SERVICE_NAME, else the binary's name
//! ```

use super::fields::text_or_env;
use crate::config::yaml::{Cx, Map};

/// The keys of the `telemetry:` section.
pub(crate) const KEYS: &[&str] = &["otlp_endpoint", "service_name"];

/// Tracing export.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TelemetrySettings {
    /// `telemetry.otlp_endpoint`, else `OTEL_EXPORTER_OTLP_ENDPOINT`; no export when absent.
    pub otlp_endpoint: Option<String>,
    /// `telemetry.service_name`, else `OTEL_SERVICE_NAME`; when absent each binary uses its
    /// own name.
    pub service_name: Option<String>,
}

/// Reads the `telemetry:` section (`None` when absent), each field else its variable.
pub(crate) fn read(
    cx: &mut Cx<'_>,
    section: Option<&Map<'_>>,
    env: &dyn Fn(&str) -> Option<String>,
) -> TelemetrySettings {
    TelemetrySettings {
        otlp_endpoint: text_or_env(
            cx,
            section,
            "otlp_endpoint",
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            env,
        ),
        service_name: text_or_env(cx, section, "service_name", "OTEL_SERVICE_NAME", env),
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::load;

    #[test]
    fn file_wins_over_environment() {
        let env = [
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://env:4318"),
            ("OTEL_SERVICE_NAME", "from-env"),
        ];
        let (settings, errors) = load("telemetry:\n  service_name: from-file\n", &env);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(
            settings.telemetry.otlp_endpoint.as_deref(),
            Some("http://env:4318")
        );
        assert_eq!(
            settings.telemetry.service_name.as_deref(),
            Some("from-file")
        );
        let (settings, _) = load("", &[]);
        assert_eq!(settings.telemetry.otlp_endpoint, None);
    }
}
