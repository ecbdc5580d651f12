//! `Config::load` against fixture directories (`tests/fixtures/config/<case>/`) and the
//! shipped examples: typed values and defaults of a valid configuration, the exact file,
//! line, column and field of every validation rule, all errors reported at once, and no
//! secret ever printed by `Debug`, the summary or an error.

use std::path::{Path, PathBuf};
use std::time::Duration;

use ferry_shared::config::{
    CatchUp, Config, ConfigErrors, DEFAULT_REDIS_URL, Direction, IdempotencyMode, TlsVersion,
    TrustMode, render_summary,
};
use ferry_shared::secrets::{SecretRef, VaultAuth};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/config")
        .join(name)
}

/// Loads with an empty environment, so the caller's VAULT_ADDR and the like do not leak in.
fn load(dir: &Path) -> Result<Config, ConfigErrors> {
    Config::load_with_env(dir, &|_| None)
}

fn errors_of(name: &str) -> ConfigErrors {
    match load(&fixture(name)) {
        Ok(_) => panic!("fixture {name} should not load"),
        Err(errors) => errors,
    }
}

/// A UTC timestamp, typed by where it is used (the tests crate has no direct chrono
/// dependency; chrono's serde support parses RFC 3339).
macro_rules! at {
    ($rfc3339:literal) => {
        serde_json::from_str(concat!("\"", $rfc3339, "\"")).expect("a timestamp")
    };
}

/// Asserts the errors are exactly `expected` (file, line, column, field, a phrase of the
/// message), in order.
fn assert_errors(errors: &ConfigErrors, expected: &[(&str, u32, u32, &str, &str)]) {
    let actual: Vec<(String, Option<u32>, Option<u32>, String)> = errors
        .errors()
        .iter()
        .map(|e| {
            (
                e.file.display().to_string(),
                e.line,
                e.column,
                e.field.clone(),
            )
        })
        .collect();
    let wanted: Vec<(String, Option<u32>, Option<u32>, String)> = expected
        .iter()
        .map(|(file, line, column, field, _)| {
            (
                file.to_string(),
                Some(*line),
                Some(*column),
                field.to_string(),
            )
        })
        .collect();
    assert_eq!(actual, wanted, "all errors:\n{errors}");
    for (error, (_, _, _, _, phrase)) in errors.errors().iter().zip(expected) {
        assert!(
            error.message.contains(phrase),
            "`{error}` should contain `{phrase}`"
        );
    }
}

#[test]
fn valid_config_is_typed_with_defaults() {
    let config = load(&fixture("valid")).expect("valid fixture loads");
    assert!(config.dir.is_absolute());
    let s = &config.settings;
    assert!(!s.hardened_mode);
    assert_eq!(s.broker.exchange_prefix, "fx");
    assert_eq!(
        s.broker.retry_delays,
        [Duration::from_secs(1), Duration::from_secs(60)]
    );
    assert_eq!(s.broker.max_attempts, 3);
    assert_eq!(s.broker.bindings, ["insurance-claims-upload", "bank.*"]);
    assert_eq!(s.worker.claim_lease, Duration::from_secs(120));
    assert_eq!(s.worker.flow_lock_lease, Duration::from_secs(45));
    assert_eq!(s.worker.flow_lock_wait, Duration::ZERO);
    assert_eq!(s.redis.key_prefix, "fx-keys");
    assert_eq!(s.redis.delivery_retention, Duration::from_secs(30 * 86_400));
    assert!(s.redis.password.as_ref().is_some_and(SecretRef::is_literal));
    assert_eq!(s.resolver.cache_ttl, Duration::from_secs(120));
    let vault = s.resolver.vault.as_ref().expect("vault configured");
    assert_eq!(vault.address, "https://vault.example:8200");
    assert_eq!(vault.namespace.as_deref(), Some("team-a"));
    match &vault.auth {
        VaultAuth::AppRole {
            mount,
            role_id,
            secret_id,
        } => {
            assert_eq!(mount, "approle");
            assert_eq!(role_id, &SecretRef::Env("VAULT_ROLE_ID".into()));
            assert_eq!(
                secret_id,
                &SecretRef::File("/run/secrets/vault-secret-id".into())
            );
        }
        other => panic!("expected approle, got {other:?}"),
    }
    assert_eq!(s.resolver.aws.region.as_deref(), Some("eu-west-1"));
    assert_eq!(s.worker.concurrency, 6);
    assert_eq!(s.worker.shutdown_grace, Duration::from_secs(45));
    assert_eq!(s.worker.health_listen.to_string(), "0.0.0.0:9090");
    assert_eq!(s.retry.max_attempts, 4);
    assert_eq!(s.retry.max_delay, Duration::from_secs(120));
    assert_eq!(s.scheduler.catch_up, CatchUp::None);
    assert_eq!(s.scheduler.metrics_listen.to_string(), "0.0.0.0:9465");
    assert_eq!(s.scheduler.publish_give_up, Duration::from_secs(90));
    assert_eq!(s.scheduler.stale_tick_claim, Duration::from_secs(45));
    assert_eq!(s.telemetry.service_name.as_deref(), Some("ferry-test"));

    assert_eq!(
        config.partners.keys().collect::<Vec<_>>(),
        ["acme", "globex"]
    );
    let acme = &config.partners["acme"];
    assert_eq!(acme.display_name, "ACME Corp");
    assert_eq!(acme.source_file, Path::new("partners/acme.yaml"));
    let c = &acme.ftps.connection;
    assert_eq!(
        (c.host.as_str(), c.port, c.max_connections),
        ("ftps.acme.example", 2121, 2)
    );
    assert!(!c.nat_workaround);
    assert_eq!(
        (c.connect_timeout, c.command_timeout, c.data_timeout),
        (
            Duration::from_secs(10),
            Duration::from_secs(20),
            Duration::from_secs(40)
        )
    );
    assert_eq!(c.listing_timezone.name(), "Europe/Berlin");
    assert_eq!(c.mdtm_timezone.name(), "UTC");
    let tls = &acme.ftps.tls;
    assert_eq!(tls.max_version, TlsVersion::Tls12);
    assert_eq!(tls.trust_mode(), TrustMode::CaAndPinned);
    let fingerprint = tls.server_cert_fingerprint.expect("pinned");
    assert_eq!(&fingerprint[..4], &[0xab, 0xcd, 0xef, 0x01]);
    let identity = tls.client_identity.as_ref().expect("mTLS");
    assert_eq!(
        identity.cert,
        SecretRef::Vault {
            mount: "secret".into(),
            path: "partners/acme".into(),
            field: "cert".into()
        }
    );
    assert!(
        identity
            .key_passphrase
            .as_ref()
            .is_some_and(SecretRef::is_literal)
    );

    // The `.yml` partner with only the required fields: every default.
    let globex = &config.partners["globex"];
    assert_eq!(globex.display_name, "globex");
    let c = &globex.ftps.connection;
    assert_eq!((c.port, c.max_connections, c.nat_workaround), (21, 4, true));
    assert_eq!(
        (c.listing_timezone.name(), c.mdtm_timezone.name()),
        ("UTC", "UTC")
    );
    assert_eq!(
        (c.connect_timeout, c.command_timeout, c.data_timeout),
        (
            Duration::from_secs(30),
            Duration::from_secs(60),
            Duration::from_secs(120)
        )
    );
    assert_eq!(globex.ftps.auth.password, None);
    assert_eq!(globex.ftps.tls.trust_mode(), TrustMode::SystemRoots);
    assert_eq!(globex.ftps.tls.max_version, TlsVersion::Tls13);
    assert!(!globex.ftps.tls.insecure_skip_verify);

    assert_eq!(
        config.flows.keys().collect::<Vec<_>>(),
        ["acme-upload", "globex-download", "globex-paused"]
    );
    let upload = &config.flows["acme-upload"];
    assert_eq!(upload.direction, Direction::Upload);
    assert_eq!(upload.remote.partner, "acme");
    assert_eq!(upload.remote.path, "/incoming");
    assert_eq!(upload.local_path, config.dir.join("outgoing/acme"));
    assert_eq!(upload.idempotency_mode, IdempotencyMode::Name);
    assert!(upload.delete_after_transfer);
    assert_eq!(upload.max_attempts, 7);
    assert_eq!(upload.min_file_age, Duration::from_secs(60));
    assert_eq!(upload.run_timeout, Duration::from_secs(600));
    assert!(upload.selects("claims.xml"));
    assert!(!upload.selects("tmp-claims.xml"));
    assert!(!upload.selects("claims.partial.xml"));
    assert!(!upload.selects("sub/claims.xml"));
    assert!(upload.selects("reports/2026/11/a.pdf"));
    assert_eq!(upload.files[0].exclude, ["tmp-*", "*.partial.xml"]);
    let schedule = upload.schedule.as_ref().expect("scheduled");
    assert_eq!(schedule.cron_text, "0 0 8 * * 1-5");
    assert_eq!(schedule.timezone.name(), "Europe/Paris");
    // Saturday noon UTC -> Monday 08:00 Paris (CET) = 07:00 UTC.
    let next = schedule.next_after(at!("2026-11-28T12:00:00Z"));
    assert_eq!(next, Some(at!("2026-11-30T07:00:00Z")));
    assert_eq!(upload.source_file, Path::new("flows/main.yaml"));
    assert_eq!(
        config.partner_of(upload).map(|p| p.id.as_str()),
        Some("acme")
    );

    let download = &config.flows["globex-download"];
    assert_eq!(download.direction, Direction::Download);
    assert!(download.enabled);
    assert_eq!(download.remote.partner, "globex");
    assert_eq!(download.local_path, Path::new("/var/lib/ferry/globex"));
    assert_eq!(download.idempotency_mode, IdempotencyMode::Hash);
    assert!(!download.delete_after_transfer);
    assert!(download.schedule.is_none());
    assert_eq!(download.max_attempts, 4, "default from retry.max_attempts");
    assert_eq!(download.min_file_age, Duration::from_secs(30));
    assert_eq!(download.run_timeout, Duration::from_secs(300));
    assert!(!config.flows["globex-paused"].enabled);
}

#[test]
fn environment_fills_only_absent_fields() {
    let env = |name: &str| match name {
        "FERRY_BROKER_URL" => Some("amqp://env-broker".to_string()),
        "FERRY_REDIS_URL" => Some("redis://env-redis".to_string()),
        _ => None,
    };
    let valid = Config::load_with_env(&fixture("valid"), &env).expect("loads");
    assert!(
        valid.settings.broker.url.contains("rabbit.example"),
        "the file wins"
    );
    let minimal = Config::load_with_env(&fixture("hardened-ok"), &env).expect("loads");
    assert_eq!(minimal.settings.broker.url, "amqp://env-broker");
    assert_eq!(minimal.settings.redis.url, "redis://env-redis");
    let defaults = load(&fixture("hardened-ok")).expect("loads");
    assert_eq!(defaults.settings.redis.url, DEFAULT_REDIS_URL);
}

#[test]
fn summary_shows_the_essentials() {
    let config = load(&fixture("valid")).expect("loads");
    let summary = render_summary(&config, at!("2026-11-28T12:00:00Z"));
    for expected in [
        "hardened mode: off",
        "amqp://ferry:***@rabbit.example:5672/prod (exchange prefix `fx`, flow-run attempts: 3, delays 1s, 1m)",
        "redis://:***@redis.example:6379/2",
        "acme  ftps.acme.example:2121  TLS: CA+pinned (max 1.2)  mTLS: yes",
        "globex  192.0.2.10:21  TLS: system roots (max 1.3)  mTLS: no",
        "acme-upload  upload",
        "-> acme:/incoming",
        "globex:/out -> /var/lib/ferry/globex",
        "*.xml (not tmp-*, *.partial.xml), reports/**/*.pdf",
        "idempotency: name",
        "next 2026-11-30 07:00:00 UTC (2026-11-30 08:00:00 CET",
        "manual/event only",
        "globex-paused [DISABLED]",
    ] {
        assert!(
            summary.contains(expected),
            "missing `{expected}` in:\n{summary}"
        );
    }
}

#[test]
fn no_literal_secret_in_debug_summary_or_errors() {
    let config = load(&fixture("valid")).expect("loads");
    let printed = format!(
        "{config:?}\n{config:#?}\n{}",
        render_summary(&config, at!("2026-11-28T12:00:00Z"))
    );
    for secret in [
        "AcmeLiteralPassw0rd",
        "BareLiteralPassphrase",
        "RedisLiteralPassw0rd",
        "RedisUrlPassw0rd",
        "BrokerUrlPassw0rd",
    ] {
        assert!(!printed.contains(secret), "`{secret}` was printed");
    }
    let errors = format!("{0}\n{0:?}", errors_of("hardened"));
    for secret in [
        "HardenedBrokerPw",
        "HardenedRedisPw",
        "HardenedRoleId",
        "HardenedSecretId",
        "HardenedFtpPw",
        "HardenedPassphrase",
        "BEGIN",
    ] {
        assert!(!errors.contains(secret), "`{secret}` was printed");
    }
}

#[test]
fn every_rule_names_file_line_and_field() {
    let errors = errors_of("rules");
    assert_errors(
        &errors,
        &[
            (
                "ferry.yaml",
                2,
                3,
                "worker.concurency",
                "did you mean `concurrency`?",
            ),
            (
                "ferry.yaml",
                4,
                3,
                "retry.max_attempts",
                "expected a whole number, found text",
            ),
            (
                "ferry.yaml",
                6,
                3,
                "redis.delivery_retention",
                "`90 days` is not a duration",
            ),
            (
                "flows/a-flows.yaml",
                5,
                7,
                "flows.unknown-partner.target.partner",
                "no partner has the id `godo`; did you mean `good`?",
            ),
            (
                "flows/a-flows.yaml",
                11,
                3,
                "flows.upload-without-target.target",
                "an upload flow needs `target",
            ),
            (
                "flows/a-flows.yaml",
                17,
                3,
                "flows.download-without-source.source",
                "a download flow needs `source",
            ),
            (
                "flows/a-flows.yaml",
                28,
                5,
                "flows.both-sides.source",
                "an upload flow has a `target`, not a `source`",
            ),
            (
                "flows/a-flows.yaml",
                44,
                5,
                "flows.five-field-cron.schedule_cron",
                "has 5 fields; a schedule has six, seconds first",
            ),
            (
                "flows/a-flows.yaml",
                55,
                5,
                "flows.unknown-zone.schedule_timezone",
                "`Europe/Pariss` is not a known time zone",
            ),
            (
                "flows/a-flows.yaml",
                65,
                19,
                "flows.bad-glob.files[0].exclude[0]",
                "`[abc` is not a valid glob",
            ),
            (
                "flows/a-flows.yaml",
                75,
                5,
                "flows.wrong-delete.delete_after_upload",
                "use `delete_after_download`",
            ),
            (
                "flows/b-more.yaml",
                2,
                3,
                "flows.shared-id",
                "duplicate flow id `shared-id`: flows/a-flows.yaml already defines it",
            ),
            (
                "flows/b-more.yaml",
                11,
                3,
                "flows.bad id!",
                "must start with a letter or digit and use only letters, digits",
            ),
            (
                "partners/a-unknown-field.yaml",
                6,
                5,
                "ftps.connection.pasive",
                "unknown field `pasive`; did you mean `passive`?",
            ),
            (
                "partners/b-wrong-type.yaml",
                6,
                5,
                "ftps.connection.port",
                "expected a whole number, found text",
            ),
            (
                "partners/c-missing-host.yaml",
                4,
                3,
                "ftps.connection.host",
                "missing required field `host`",
            ),
            (
                "partners/d-passive-false.yaml",
                6,
                5,
                "ftps.connection.passive",
                "passive mode is required; set passive: true (ferry supports passive FTPS only)",
            ),
            (
                "partners/e-passive-missing.yaml",
                4,
                3,
                "ftps.connection.passive",
                "passive mode is required",
            ),
            (
                "partners/f-implicit.yaml",
                11,
                5,
                "ftps.tls.mode",
                "implicit TLS is not supported; use explicit (AUTH TLS on port 21)",
            ),
            (
                "partners/g-fingerprint.yaml",
                10,
                5,
                "ftps.tls.server_cert_fingerprint",
                "64 hex digits",
            ),
            (
                "partners/h-secret-ref.yaml",
                9,
                5,
                "ftps.auth.password",
                "a Vault reference must look like `vault:MOUNT/PATH#FIELD`",
            ),
            (
                "partners/i-vault-unconfigured.yaml",
                9,
                5,
                "ftps.auth.password",
                "needs Vault",
            ),
            (
                "partners/j-bad-id.yaml",
                1,
                1,
                "id",
                "the partner id `acme corp!` must start with a letter or digit",
            ),
            (
                "partners/l-dup-second.yaml",
                2,
                1,
                "id",
                "duplicate partner id `twin`: partners/k-dup-first.yaml already defines it",
            ),
            ("partners/m-invalid-yaml.yaml", 6, 12, "", "invalid YAML"),
            (
                "partners/n-protocol.yaml",
                2,
                1,
                "protocol",
                "protocol `sftp` is not supported",
            ),
            (
                "partners/o-mtls-half.yaml",
                9,
                3,
                "ftps.tls",
                "needs both client_cert and client_private_key",
            ),
            ("partners/p-empty.yaml", 1, 1, "", "the file is empty"),
            (
                "partners/q-data-limits.yaml",
                8,
                41,
                "ftps.connection.allowed_data_addresses[1]",
                "`not-an-ip` is not an IP address",
            ),
            (
                "partners/q-data-limits.yaml",
                9,
                5,
                "ftps.connection.max_listing_entries",
                "",
            ),
            (
                "partners/r-timezones.yaml",
                7,
                5,
                "ftps.connection.listing_timezone",
                "`CEST` is not a known time zone; use an IANA name such as `Europe/Paris`",
            ),
            (
                "partners/r-timezones.yaml",
                8,
                5,
                "ftps.connection.mdtm_timezone",
                "`Europe/Berln` is not a known time zone",
            ),
        ],
    );
    assert!(
        errors
            .to_string()
            .lines()
            .any(|line| line == "partners/d-passive-false.yaml:6:5: ftps.connection.passive: passive mode is required; set passive: true (ferry supports passive FTPS only)")
    );
}

#[test]
fn hardened_mode_refuses_literals_and_insecure_tls() {
    const LITERAL: &str = "hardened mode forbids a secret written in the configuration";
    assert_errors(
        &errors_of("hardened"),
        &[
            ("ferry.yaml", 4, 3, "broker.url", "set FERRY_BROKER_URL"),
            ("ferry.yaml", 6, 3, "redis.password", LITERAL),
            ("ferry.yaml", 11, 5, "vault.auth.role_id", LITERAL),
            ("ferry.yaml", 12, 5, "vault.auth.secret_id", LITERAL),
            (
                "flows/links.yaml",
                8,
                5,
                "flows.links.follow_links",
                "hardened mode forbids follow_links: true",
            ),
            (
                "partners/literals.yaml",
                7,
                5,
                "ftps.connection.allowed_data_addresses",
                "hardened mode forbids allowed_data_addresses",
            ),
            (
                "partners/literals.yaml",
                10,
                5,
                "ftps.auth.password",
                LITERAL,
            ),
            (
                "partners/literals.yaml",
                12,
                5,
                "ftps.tls.client_cert",
                LITERAL,
            ),
            (
                "partners/literals.yaml",
                13,
                5,
                "ftps.tls.client_private_key",
                LITERAL,
            ),
            (
                "partners/literals.yaml",
                14,
                5,
                "ftps.tls.client_key_passphrase",
                LITERAL,
            ),
            (
                "partners/literals.yaml",
                15,
                5,
                "ftps.tls.insecure_skip_verify",
                "hardened mode forbids insecure_skip_verify: true",
            ),
        ],
    );
}

#[test]
fn hardened_mode_accepts_references() {
    let config = load(&fixture("hardened-ok")).expect("references only");
    assert!(config.settings.hardened_mode);
    match &config.settings.resolver.vault.as_ref().expect("vault").auth {
        VaultAuth::Token(token) => assert_eq!(token, &SecretRef::Env("VAULT_TOKEN".into())),
        other => panic!("expected the default token auth, got {other:?}"),
    }
}

#[test]
fn many_errors_are_reported_at_once() {
    assert_errors(
        &errors_of("many-errors"),
        &[
            (
                "ferry.yaml",
                2,
                3,
                "security.hardened_mode",
                "expected true or false",
            ),
            (
                "ferry.yaml",
                4,
                3,
                "worker.concurrency",
                "between 1 and 1024",
            ),
            (
                "ferry.yaml",
                5,
                3,
                "worker.health_listen",
                "not a listen address",
            ),
            (
                "ferry.yaml",
                7,
                3,
                "scheduler.catch_up",
                "use one of `latest`, `none`",
            ),
            (
                "ferry.yaml",
                9,
                3,
                "telemetry.servce_name",
                "did you mean `service_name`?",
            ),
            (
                "ferry.yaml",
                11,
                22,
                "broker.retry_delays[1]",
                "`soon` is not a duration",
            ),
            (
                "ferry.yaml",
                11,
                28,
                "broker.retry_delays[2]",
                "longer than zero",
            ),
            (
                "ferry.yaml",
                12,
                14,
                "broker.bindings[0]",
                "is not a routing pattern",
            ),
            (
                "flows/everything-wrong.yaml",
                3,
                5,
                "flows.everything-wrong.direction",
                "use one of `upload`, `download`",
            ),
            (
                "flows/everything-wrong.yaml",
                4,
                5,
                "flows.everything-wrong.target.path",
                "missing required field `path`",
            ),
            (
                "flows/everything-wrong.yaml",
                5,
                7,
                "flows.everything-wrong.target.partner",
                "no partner has the id `nobody`",
            ),
            (
                "flows/everything-wrong.yaml",
                6,
                5,
                "flows.everything-wrong.local",
                "must be a mapping",
            ),
            (
                "flows/everything-wrong.yaml",
                7,
                5,
                "flows.everything-wrong.files",
                "expected a list",
            ),
            (
                "flows/everything-wrong.yaml",
                8,
                5,
                "flows.everything-wrong.idempotency_mode",
                "use one of `hash`, `content`, `name`, `none`",
            ),
            (
                "flows/everything-wrong.yaml",
                9,
                5,
                "flows.everything-wrong.schedule_cron",
                "six, seconds first",
            ),
            (
                "flows/everything-wrong.yaml",
                10,
                5,
                "flows.everything-wrong.schedule_timezone",
                "not a known time zone",
            ),
            (
                "flows/everything-wrong.yaml",
                11,
                5,
                "flows.everything-wrong.max_attempts",
                "between 1 and 100",
            ),
            (
                "flows/everything-wrong.yaml",
                12,
                5,
                "flows.everything-wrong.min_file_age",
                "not a duration",
            ),
            (
                "flows/everything-wrong.yaml",
                13,
                5,
                "flows.everything-wrong.run_timeout",
                "longer than zero",
            ),
            (
                "flows/everything-wrong.yaml",
                14,
                5,
                "flows.everything-wrong.enable",
                "did you mean `enabled`?",
            ),
            (
                "partners/everything-wrong.yaml",
                6,
                5,
                "ftps.connection.host",
                "must not be empty",
            ),
            (
                "partners/everything-wrong.yaml",
                7,
                5,
                "ftps.connection.port",
                "between 1 and 65535",
            ),
            (
                "partners/everything-wrong.yaml",
                8,
                5,
                "ftps.connection.passive",
                "passive mode is required",
            ),
            (
                "partners/everything-wrong.yaml",
                9,
                5,
                "ftps.connection.nat_workaround",
                "expected true or false",
            ),
            (
                "partners/everything-wrong.yaml",
                10,
                5,
                "ftps.connection.connect_timeout",
                "expected a duration",
            ),
            (
                "partners/everything-wrong.yaml",
                11,
                3,
                "ftps.auth.username",
                "missing required field `username`",
            ),
            (
                "partners/everything-wrong.yaml",
                12,
                5,
                "ftps.auth.user",
                "did you mean `username`?",
            ),
            (
                "partners/everything-wrong.yaml",
                13,
                5,
                "ftps.auth.password",
                "`env:` must be followed by an environment variable name",
            ),
            (
                "partners/everything-wrong.yaml",
                15,
                5,
                "ftps.tls.mode",
                "implicit TLS is not supported",
            ),
            (
                "partners/everything-wrong.yaml",
                16,
                5,
                "ftps.tls.server_cert_fingerprint",
                "SHA-256",
            ),
            (
                "partners/everything-wrong.yaml",
                17,
                5,
                "ftps.tls.max_version",
                "\"1.2\" or \"1.3\"",
            ),
            (
                "partners/everything-wrong.yaml",
                18,
                5,
                "ftps.tls.insecure",
                "did you mean `insecure_skip_verify`?",
            ),
        ],
    );
}

#[test]
fn a_missing_directory_is_one_clear_error() {
    let errors = errors_of("does-not-exist");
    assert_eq!(errors.len(), 1);
    assert!(errors.to_string().contains("does not exist"), "{errors}");
}

#[test]
fn examples_load_and_print_no_secret() {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let mut loaded = 0;
    for entry in std::fs::read_dir(&examples).expect("examples/") {
        let dir = entry.expect("entry").path();
        if !dir.is_dir() {
            continue;
        }
        let config = load(&dir)
            .unwrap_or_else(|errors| panic!("{} does not load:\n{errors}", dir.display()));
        assert!(!config.flows.is_empty(), "{} has flows", dir.display());
        let summary = render_summary(&config, at!("2026-11-28T12:00:00Z"));
        assert!(!summary.contains("guest:guest"), "{summary}");
        loaded += 1;
    }
    assert!(loaded >= 2, "examples/basic and examples/hardened");
}
