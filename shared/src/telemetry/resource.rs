//! The OpenTelemetry resource of every span and metric: which service, which version, and what
//! the operator adds.
//!
//! `service.name` comes from the caller: the configuration's `telemetry.service_name`, else the
//! standard `OTEL_SERVICE_NAME` (both read by the configuration loader, `config/settings.rs`),
//! else the binary's own name. The SDK's resource builder reads `OTEL_RESOURCE_ATTRIBUTES`
//! (`key=value,...`, e.g. `deployment.environment.name=prod`) itself; the service name and
//! version set here win over the same keys there.

use opentelemetry::KeyValue;
use opentelemetry_sdk::Resource;

/// The resource for `service_name`, with the environment's attributes.
pub(crate) fn resource(service_name: &str) -> Resource {
    Resource::builder()
        .with_service_name(service_name.to_owned())
        .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
        .build()
}
