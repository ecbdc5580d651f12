//! `ferry-worker probe` records the partner metrics of its connect and pushes them over
//! OTLP/HTTP when it exits (a one-shot command has no `/metrics` to scrape): the partner
//! certificate's expiry (equal to the test certificate's notAfter, which the probe also
//! prints), connect failures by kind against a server whose certificate has expired or that
//! refuses TLS, and a secret that OpenBao does not have, counted by kind.
//!
//! Needs `cargo build -p ferry-worker` first (the binary next to the test).

use std::time::Duration;

use ferry_tests::fleet::{Fleet, FleetOptions, FleetProcess};
use ferry_tests::ftp::{FtpServerKind, FtpServerOptions};
use ferry_tests::otlp_collector::start_collector;
use ferry_tests::otlp_metrics::{last_metrics_export, sum};
use ferry_tests::pki::CertVariant;
use ferry_tests::vault::OpenBao;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;

/// How long a probe may take.
const PROBE: Duration = Duration::from_secs(60);
/// The test certificates' notAfter: 2100-01-01 and, expired, 2021-01-01 (`ferry_tests::pki`).
const VALID_NOT_AFTER: f64 = 4_102_444_800.0;
const EXPIRED_NOT_AFTER: f64 = 1_609_459_200.0;

const PARTNER: [(&str, &str); 1] = [("partner", "partner")];

/// A fleet (partner server as `server` says) whose processes push to a collector of the
/// test's own; `edit` changes its configuration directory before the probe runs it.
/// Returns the probe's exit success, its output and the last metrics it pushed.
async fn probe(
    test: &str,
    server: FtpServerOptions,
    edit: impl FnOnce(&Fleet),
) -> (bool, String, ExportMetricsServiceRequest) {
    let (collector, mut requests) = start_collector().await.expect("collector");
    let fleet = Fleet::start(
        test,
        FleetOptions {
            server: Some(server),
            ..FleetOptions::default()
        },
    )
    .await
    .expect("fleet");
    fleet.push_telemetry_to(collector).expect("telemetry");
    edit(&fleet);
    let mut process: FleetProcess = fleet.spawn_probe("probe").expect("probe");
    let status = process.wait_exit(PROBE).await.expect("the probe exits");
    let output = process.log_text();
    let pushed = last_metrics_export(
        &mut requests,
        Duration::from_secs(10),
        Duration::from_secs(1),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}: the probe pushed no metrics\n{output}"));
    (status.success(), output, pushed)
}

#[tokio::test]
async fn probe_pushes_the_partner_certificate_expiry_it_prints() {
    let (ok, output, pushed) = probe(
        "probe-valid",
        FtpServerOptions::new(FtpServerKind::Vsftpd),
        |_| {},
    )
    .await;
    assert!(ok, "{output}");
    assert!(
        output.contains("expires 2100-01-01T00:00:00+00:00"),
        "{output}"
    );
    assert_eq!(
        sum(
            &pushed,
            "ferry_partner_certificate_expiry_timestamp_seconds",
            &PARTNER
        ),
        VALID_NOT_AFTER
    );
    assert_eq!(
        sum(
            &pushed,
            "ferry_ftps_connects_total",
            &[("partner", "partner"), ("outcome", "success")]
        ),
        1.0
    );
    assert_eq!(sum(&pushed, "ferry_ftps_sessions_open", &PARTNER), 0.0);
}

#[tokio::test]
async fn an_expired_certificate_is_a_connect_failure_by_kind_with_its_past_expiry() {
    let mut server = FtpServerOptions::new(FtpServerKind::Vsftpd);
    server.cert = CertVariant::Expired;
    let (ok, output, pushed) = probe("probe-expired", server, |_| {}).await;
    assert!(!ok, "{output}");
    assert!(output.contains("certificate_validation"), "{output}");
    assert_eq!(
        sum(
            &pushed,
            "ferry_ftps_connect_failures_total",
            &[
                ("partner", "partner"),
                ("error_kind", "certificate_validation")
            ]
        ),
        1.0
    );
    assert_eq!(
        sum(
            &pushed,
            "ferry_ftps_connects_total",
            &[("partner", "partner"), ("outcome", "failure")]
        ),
        1.0
    );
    assert_eq!(
        sum(
            &pushed,
            "ferry_partner_certificate_expiry_timestamp_seconds",
            &PARTNER
        ),
        EXPIRED_NOT_AFTER
    );
}

#[tokio::test]
async fn a_server_refusing_tls_is_a_connect_failure_by_kind() {
    let mut server = FtpServerOptions::new(FtpServerKind::Pyftpdlib);
    server.plaintext_only = true;
    let (ok, output, pushed) = probe("probe-plain", server, |_| {}).await;
    assert!(!ok, "{output}");
    assert_eq!(
        sum(
            &pushed,
            "ferry_ftps_connect_failures_total",
            &[("partner", "partner"), ("error_kind", "tls_not_offered")]
        ),
        1.0,
        "{output}"
    );
    assert_eq!(
        sum(
            &pushed,
            "ferry_partner_certificate_expiry_timestamp_seconds",
            &PARTNER
        ),
        0.0,
        "no certificate seen, no expiry"
    );
}

#[tokio::test]
async fn a_secret_missing_from_openbao_counts_a_resolution_failure_by_kind() {
    let bao = OpenBao::start().await.expect("OpenBao");
    let (ok, output, pushed) = probe(
        "probe-secret",
        FtpServerOptions::new(FtpServerKind::Vsftpd),
        |fleet| {
            fleet
                .append_settings(&format!(
                    "vault:\n  address: {}\n  auth:\n    token: \"literal:{}\"\n",
                    bao.addr, bao.root_token
                ))
                .expect("ferry.yaml");
            fleet
                .set_partner_password("vault:secret/nobody/here#password")
                .expect("partner.yaml");
        },
    )
    .await;
    assert!(!ok, "{output}");
    assert!(output.contains("FAILED  secrets"), "{output}");
    assert_eq!(
        sum(
            &pushed,
            "ferry_secret_resolution_failures_total",
            &[("store", "vault"), ("error_kind", "not_found")]
        ),
        1.0,
        "{output}"
    );
    assert_eq!(
        sum(
            &pushed,
            "ferry_secret_resolutions_total",
            &[("store", "vault"), ("outcome", "failure")]
        ),
        1.0
    );
    assert_eq!(sum(&pushed, "ferry_ftps_connects_total", &[]), 0.0);
}
