//! [`Settings`]: the fleet-wide settings of `ferry.yaml`, with defaults and environment
//! fallbacks.
//!
//! Every field is optional and a missing `ferry.yaml` means all defaults. Where an
//! environment variable is named (`FERRY_BROKER_URL`, `VAULT_ADDR`, ...) it is used only
//! when the field is absent from the file: the file, being reviewed and versioned, wins.
//!
//! One file per section, each holding the section's struct (with its docs and `Default`),
//! its known keys (`KEYS`), its `read` with every check, and its unit tests: a new key is
//! added in one place. This file only lists the sections ([`SECTIONS`], from which the
//! root's known keys come) and reads them in order: `security` first, because hardened mode
//! decides what the other sections accept. `readme_table.rs` checks that the README's
//! `ferry.yaml` table documents exactly these keys.

mod audit;
mod aws;
mod broker;
mod fields;
mod http_trigger;
#[cfg(test)]
mod readme_table;
mod redis;
mod redis_topology;
mod retry;
mod scheduler;
mod secrets;
mod security;
mod store;
mod telemetry;
mod vault;
mod worker;

pub use audit::AuditSettings;
pub use broker::{BrokerSettings, DEFAULT_BROKER_URL};
pub use http_trigger::HttpTriggerSettings;
pub use redis::{DEFAULT_REDIS_URL, RedisSettings};
pub use redis_topology::RedisTopology;
pub use retry::RetrySettings;
pub use scheduler::{CatchUp, SchedulerSettings};
pub use store::{StoreKind, StoreSettings};
pub use telemetry::TelemetrySettings;
pub use worker::WorkerSettings;

use super::yaml::{Cx, Field, Map, Node};
pub use crate::secrets::redact_url;
use crate::secrets::{ResolverSettings, SecretRef};

/// The settings of `ferry.yaml`, defaults applied.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    /// `security.hardened_mode`: forbid literal secrets and `insecure_skip_verify`.
    pub hardened_mode: bool,
    /// RabbitMQ.
    pub broker: BrokerSettings,
    /// Redis (idempotency records, claims, locks).
    pub redis: RedisSettings,
    /// Which store keeps them: Redis (default) or one embedded file.
    pub store: StoreSettings,
    /// How secret references are resolved (`vault:`, `aws:`, `secrets:`).
    pub resolver: ResolverSettings,
    /// The worker process.
    pub worker: WorkerSettings,
    /// Per-file transfer retries.
    pub retry: RetrySettings,
    /// Tracing export.
    pub telemetry: TelemetrySettings,
    /// The scheduler process.
    pub scheduler: SchedulerSettings,
    /// `POST /v1/flows/{flow}/runs` (off unless `http_trigger.listen` is set).
    pub http_trigger: HttpTriggerSettings,
    /// The audit trail (see `audit.rs`).
    pub audit: AuditSettings,
}

/// The sections of `ferry.yaml`, each with its known keys (kept in the section's file).
pub(crate) const SECTIONS: [(&str, &[&str]); 13] = [
    ("security", security::KEYS),
    ("broker", broker::KEYS),
    ("redis", redis::KEYS),
    ("store", store::KEYS),
    ("vault", vault::KEYS),
    ("aws", aws::KEYS),
    ("secrets", secrets::KEYS),
    ("worker", worker::KEYS),
    ("retry", retry::KEYS),
    ("telemetry", telemetry::KEYS),
    ("scheduler", scheduler::KEYS),
    ("http_trigger", http_trigger::KEYS),
    ("audit", audit::KEYS),
];

/// The known keys of the root: the names of [`SECTIONS`].
pub(crate) const ROOT_KEYS: [&str; SECTIONS.len()] = {
    let mut keys = [""; SECTIONS.len()];
    let mut i = 0;
    while i < SECTIONS.len() {
        keys[i] = SECTIONS[i].0;
        i += 1;
    }
    keys
};

/// Reads `ferry.yaml` (already parsed; `None` when absent or empty) with `env` for the
/// environment fallbacks.
pub(crate) fn read(
    cx: &mut Cx<'_>,
    root: Option<&Node>,
    env: &dyn Fn(&str) -> Option<String>,
) -> (Settings, SecretRules) {
    let root = root.and_then(|node| Map::root(cx, node, &ROOT_KEYS));
    // A section's map, its unknown keys reported; `None` when absent (or not a map).
    let section = |cx: &mut Cx<'_>, name: &str| {
        let known = SECTIONS
            .iter()
            .find(|(section, _)| *section == name)
            .map_or(&[][..], |(_, keys)| *keys);
        root.as_ref()
            .and_then(|r| r.get(name))
            .and_then(|f| f.map(cx, known))
    };

    // Each section's map is taken (its unknown keys reported) just before it is read, in
    // this order, so errors come out section by section.
    let map = section(cx, "security");
    let hardened = security::read(cx, map.as_ref());
    let map = section(cx, "broker");
    let broker = broker::read(cx, map.as_ref(), hardened, env);
    let map = section(cx, "redis");
    let redis = redis::read(cx, map.as_ref(), hardened, env);
    let map = section(cx, "store");
    let store = store::read(cx, map.as_ref());

    let map = section(cx, "vault");
    let rules = SecretRules {
        hardened,
        vault_declared: root.as_ref().is_some_and(|r| r.get("vault").is_some())
            || env("VAULT_ADDR").is_some_and(|v| !v.is_empty()),
    };
    let root_loc = root.as_ref().map(Map::loc);
    let vault = vault::read(cx, map.as_ref(), root_loc, hardened, env);
    let map = section(cx, "aws");
    let aws = aws::read(cx, map.as_ref(), env);
    let map = section(cx, "http_trigger");
    let http_trigger = http_trigger::read(cx, map.as_ref(), rules);
    let mut resolver = ResolverSettings {
        vault,
        aws,
        ..ResolverSettings::default()
    };
    let map = section(cx, "secrets");
    secrets::read(cx, map.as_ref(), &mut resolver);

    let map = section(cx, "worker");
    let worker = worker::read(cx, map.as_ref());
    let map = section(cx, "retry");
    let retry = retry::read(cx, map.as_ref());
    let map = section(cx, "telemetry");
    let telemetry = telemetry::read(cx, map.as_ref(), env);
    let map = section(cx, "scheduler");
    let scheduler = scheduler::read(cx, map.as_ref());
    let map = section(cx, "audit");
    let audit = audit::read(cx, map.as_ref(), hardened);

    let settings = Settings {
        hardened_mode: hardened,
        broker,
        redis,
        store,
        resolver,
        worker,
        retry,
        telemetry,
        scheduler,
        http_trigger,
        audit,
    };
    (settings, rules)
}

/// What reading a partner's secret-bearing fields needs to know from `ferry.yaml`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SecretRules {
    /// `security.hardened_mode`: literals are refused.
    pub(crate) hardened: bool,
    /// Vault is configured (a `vault:` section, even an invalid one, or `VAULT_ADDR`), so
    /// `vault:` references are allowed.
    pub(crate) vault_declared: bool,
}

impl SecretRules {
    /// Reads the secret-bearing field `field`; `literal_allowed` for fields that hold no
    /// secret in practice (a CA certificate). A `vault:` reference needs Vault configured.
    pub(crate) fn read(
        &self,
        cx: &mut Cx<'_>,
        field: Field<'_>,
        literal_allowed: bool,
    ) -> Option<SecretRef> {
        let reference = field.secret(cx, self.hardened && !literal_allowed)?;
        if matches!(reference, SecretRef::Vault { .. }) && !self.vault_declared {
            field.error(
                cx,
                "this `vault:` reference needs Vault: add a `vault:` section with `address` to ferry.yaml (or set VAULT_ADDR)",
            );
            return None;
        }
        Some(reference)
    }
}

/// The sections' unit tests read a whole `ferry.yaml` through [`read`], so each also
/// proves its section is wired in.
#[cfg(test)]
mod test_support {
    use std::path::Path;

    use super::{Settings, read};
    use crate::config::ConfigError;
    use crate::config::yaml::{Cx, parse};

    /// Reads `text` as `ferry.yaml` with only `env` as the environment.
    pub(super) fn load(text: &str, env: &[(&str, &str)]) -> (Settings, Vec<ConfigError>) {
        let mut errors = Vec::new();
        let mut cx = Cx::new(Path::new("ferry.yaml"), &mut errors);
        let root = parse(&mut cx, text);
        let env = |name: &str| {
            env.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        };
        let (settings, _) = read(&mut cx, root.as_ref(), &env);
        (settings, errors)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::test_support::load;
    use super::*;

    #[test]
    fn empty_file_means_defaults() {
        let (settings, errors) = load("", &[]);
        assert!(errors.is_empty());
        assert_eq!(settings.broker.url, DEFAULT_BROKER_URL);
        assert_eq!(
            settings.redis.delivery_retention,
            Duration::from_secs(90 * 86_400)
        );
        assert_eq!(settings.worker.concurrency, 4);
        assert!(settings.resolver.vault.is_none());
    }

    #[test]
    fn environment_fills_absent_fields_only() {
        let env = [
            ("FERRY_BROKER_URL", "amqp://env-host"),
            ("FERRY_REDIS_URL", "redis://env-host"),
            ("VAULT_ADDR", "https://vault.env:8200"),
        ];
        let (settings, errors) = load("redis:\n  url: redis://file-host\n", &env);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(settings.broker.url, "amqp://env-host");
        assert_eq!(settings.redis.url, "redis://file-host");
        assert_eq!(
            settings.resolver.vault.map(|v| v.address).as_deref(),
            Some("https://vault.env:8200")
        );
    }

    #[test]
    fn an_unknown_section_is_an_error_and_every_section_is_known() {
        let (_, errors) = load("brokers:\n  url: amqp://h\n", &[]);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].field, "brokers");
        // Each section is read with its own keys: those are accepted, any other is refused.
        for (name, keys) in SECTIONS {
            let (_, errors) = load(&format!("{name}:\n  no_such_key: 1\n"), &[]);
            let unknown = format!("{name}.no_such_key");
            assert!(
                errors.iter().any(|e| e.field == unknown),
                "{name}: {errors:?}"
            );
            for key in keys {
                let (_, errors) = load(&format!("{name}:\n  {key}: ~\n"), &[]);
                assert!(
                    errors
                        .iter()
                        .all(|e| !e.message.starts_with("unknown field")),
                    "{name}.{key}: {errors:?}"
                );
            }
        }
    }

    #[test]
    fn debug_hides_url_passwords() {
        let settings = Settings::default();
        assert!(!format!("{settings:?}").contains("guest:guest"));
    }
}
