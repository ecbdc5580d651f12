//! telemetry: under construction.
