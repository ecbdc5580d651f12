//! The partner side: FTPS connects (every attempt, and the failures by kind), the sessions
//! open now, and the expiry time of the certificate each partner presents.
//!
//! All recorded by the FTPS client's one connect path (`ftps/connect.rs`), so reconnects
//! inside a session, the pool's new sessions and `ferry-worker probe` count alike. The
//! `partner` label is the configured partner id, carried by the session configuration;
//! a session built without one (tests, tools) records nothing.
//!
//! The certificate gauge is the leaf's `notAfter` as a Unix time, set at each handshake
//! that got as far as a certificate, accepted or not: an expired certificate that makes
//! every connect fail still shows its (past) expiry, which is what the operator needs.

use std::sync::OnceLock;

use opentelemetry::KeyValue;
use opentelemetry::global;
use opentelemetry::metrics::{Counter, Gauge, Meter, UpDownCounter};

use super::METER_NAME;

/// How a connect attempt ended, the `outcome` label of `ferry_ftps_connects_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectOutcome {
    /// Logged in, features read: the session is usable.
    Success,
    /// Some step failed (`ferry_ftps_connect_failures_total` says which kind).
    Failure,
}

impl ConnectOutcome {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            ConnectOutcome::Success => "success",
            ConnectOutcome::Failure => "failure",
        }
    }
}

/// The FTPS instruments.
#[derive(Debug)]
pub struct PartnerMetrics {
    /// `ferry_ftps_connects_total{partner,outcome}`.
    pub connects: Counter<u64>,
    /// `ferry_ftps_connect_failures_total{partner,error_kind}`.
    pub connect_failures: Counter<u64>,
    /// `ferry_ftps_sessions_open{partner}`.
    pub sessions_open: UpDownCounter<i64>,
    /// `ferry_partner_certificate_expiry_timestamp_seconds{partner}`.
    pub certificate_expiry: Gauge<f64>,
}

impl PartnerMetrics {
    /// The instruments, built from the global meter provider on first use.
    pub fn global() -> &'static PartnerMetrics {
        static METRICS: OnceLock<PartnerMetrics> = OnceLock::new();
        METRICS.get_or_init(|| PartnerMetrics::new(&global::meter(METER_NAME)))
    }

    /// The instruments of `meter`.
    pub fn new(meter: &Meter) -> Self {
        PartnerMetrics {
            connects: meter
                .u64_counter("ferry_ftps_connects_total")
                .with_description(
                    "FTPS connect attempts (TCP, AUTH TLS, handshake, login), by outcome \
                     (success, failure)",
                )
                .with_unit("{connect}")
                .build(),
            connect_failures: meter
                .u64_counter("ferry_ftps_connect_failures_total")
                .with_description(
                    "FTPS connect attempts that failed, by error kind (connection_refused, \
                     tls_not_offered, tls_handshake, certificate_validation, \
                     authentication_failed, timeout...)",
                )
                .with_unit("{connect}")
                .build(),
            sessions_open: meter
                .i64_up_down_counter("ferry_ftps_sessions_open")
                .with_description("FTPS sessions logged in and open now (in use or idle)")
                .with_unit("{session}")
                .build(),
            certificate_expiry: meter
                .f64_gauge("ferry_partner_certificate_expiry_timestamp_seconds")
                .with_description(
                    "Unix time at which the certificate the partner last presented expires \
                     (its notAfter)",
                )
                .with_unit("s")
                .build(),
        }
    }

    /// Starts `partner`'s connect counters at zero (both outcomes), so that the first
    /// connects after start are increases Prometheus sees.
    pub fn initialize(&self, partner: &str) {
        for outcome in [ConnectOutcome::Success, ConnectOutcome::Failure] {
            self.connects.add(
                0,
                &[
                    KeyValue::new("partner", partner.to_owned()),
                    KeyValue::new("outcome", outcome.as_str()),
                ],
            );
        }
    }

    /// Counts one connect attempt to `partner`: a success when `error_kind` is `None`, a
    /// failure otherwise, also counted under its `error_kind`.
    pub fn record_connect(&self, partner: &str, error_kind: Option<&'static str>) {
        let partner_label = KeyValue::new("partner", partner.to_owned());
        let outcome = match error_kind {
            None => ConnectOutcome::Success,
            Some(_) => ConnectOutcome::Failure,
        };
        self.connects.add(
            1,
            &[
                partner_label.clone(),
                KeyValue::new("outcome", outcome.as_str()),
            ],
        );
        if let Some(kind) = error_kind {
            self.connect_failures
                .add(1, &[partner_label, KeyValue::new("error_kind", kind)]);
        }
    }

    /// Sets `partner`'s certificate expiry to `not_after` (Unix seconds).
    pub fn record_certificate_expiry(&self, partner: &str, not_after: i64) {
        self.certificate_expiry.record(
            not_after as f64,
            &[KeyValue::new("partner", partner.to_owned())],
        );
    }

    /// Counts a session to `partner` as open until the returned guard is dropped (the
    /// connection closed, politely or not).
    pub fn session_opened(&'static self, partner: &str) -> SessionOpen {
        let attributes = [KeyValue::new("partner", partner.to_owned())];
        self.sessions_open.add(1, &attributes);
        SessionOpen {
            gauge: &self.sessions_open,
            attributes,
        }
    }
}

/// A session counted in `ferry_ftps_sessions_open` until dropped.
#[must_use = "the session stops counting as open when the guard is dropped"]
#[derive(Debug)]
pub struct SessionOpen {
    gauge: &'static UpDownCounter<i64>,
    attributes: [KeyValue; 1],
}

impl Drop for SessionOpen {
    fn drop(&mut self) {
        self.gauge.add(-1, &self.attributes);
    }
}
