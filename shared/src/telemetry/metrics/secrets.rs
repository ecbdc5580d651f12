//! Secret resolutions: how many, from which store, how they failed, and the two events of
//! a degraded store that used to be counted only inside the resolver (a stale value served
//! during a store outage, a Vault login). The resolver's own counters (`stale_served`,
//! `vault_logins`) stay for its tests; every increment of them records here too.
//!
//! Labels: `store` (`env`, `file`, `literal`, `vault`, `aws_secrets_manager`), `outcome`
//! and `error_kind`, all closed sets. Never the reference (a path in a store says more
//! about the estate than a metric should) and never, of course, a value.

use std::sync::OnceLock;

use opentelemetry::KeyValue;
use opentelemetry::global;
use opentelemetry::metrics::{Counter, Meter};

use super::METER_NAME;

/// The secret instruments.
#[derive(Debug)]
pub struct SecretMetrics {
    /// `ferry_secret_resolutions_total{store,outcome}` (outcome `success` or `failure`).
    pub resolutions: Counter<u64>,
    /// `ferry_secret_resolution_failures_total{store,error_kind}`.
    pub failures: Counter<u64>,
    /// `ferry_secret_stale_served_total{store}`.
    pub stale_served: Counter<u64>,
    /// `ferry_secret_store_logins_total{store}`.
    pub logins: Counter<u64>,
}

impl SecretMetrics {
    /// The instruments, built from the global meter provider on first use.
    pub fn global() -> &'static SecretMetrics {
        static METRICS: OnceLock<SecretMetrics> = OnceLock::new();
        METRICS.get_or_init(|| SecretMetrics::new(&global::meter(METER_NAME)))
    }

    /// The instruments of `meter`.
    pub fn new(meter: &Meter) -> Self {
        SecretMetrics {
            resolutions: meter
                .u64_counter("ferry_secret_resolutions_total")
                .with_description(
                    "Secret references resolved, by store and outcome (success, failure); \
                     cached answers included",
                )
                .with_unit("{resolution}")
                .build(),
            failures: meter
                .u64_counter("ferry_secret_resolution_failures_total")
                .with_description(
                    "Secret resolutions that failed, by store and error kind (not_found, \
                     field_missing, permission_denied, unavailable, login_failed...)",
                )
                .with_unit("{resolution}")
                .build(),
            stale_served: meter
                .u64_counter("ferry_secret_stale_served_total")
                .with_description(
                    "Resolutions answered with the last value fetched because the store \
                     could not be reached (secrets.stale_grace)",
                )
                .with_unit("{resolution}")
                .build(),
            logins: meter
                .u64_counter("ferry_secret_store_logins_total")
                .with_description("Logins to a secret store (a new Vault token)")
                .with_unit("{login}")
                .build(),
        }
    }

    /// Counts one resolution from `store`: `error_kind` is `None` for a success.
    pub fn record_resolution(&self, store: &'static str, error_kind: Option<&'static str>) {
        let outcome = if error_kind.is_some() {
            "failure"
        } else {
            "success"
        };
        self.resolutions.add(
            1,
            &[
                KeyValue::new("store", store),
                KeyValue::new("outcome", outcome),
            ],
        );
        if let Some(kind) = error_kind {
            self.failures.add(
                1,
                &[
                    KeyValue::new("store", store),
                    KeyValue::new("error_kind", kind),
                ],
            );
        }
    }

    /// Counts one stale value served from `store`.
    pub fn record_stale_served(&self, store: &'static str) {
        self.stale_served.add(1, &[KeyValue::new("store", store)]);
    }

    /// Counts one login to `store`.
    pub fn record_login(&self, store: &'static str) {
        self.logins.add(1, &[KeyValue::new("store", store)]);
    }
}
