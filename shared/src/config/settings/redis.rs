//! The `redis:` section of `ferry.yaml`: the idempotency store (delivery records, claims,
//! flow locks, ticks, the audit trail). Which kind of deployment (one node, a cluster, a
//! sentinel-managed master) is read by `redis_topology.rs`; this file reads the rest.
//!
//! ```yaml
//! redis:
//!   url: rediss://redis.example:6380   # else FERRY_REDIS_URL, else the default
//!   password: env:FERRY_REDIS_PASSWORD
//!   key_prefix: ferry
//!   delivery_retention: 90d
//! ```
//!
//! # Security
//!
//! The URL may carry a password: `Debug` redacts it, and in hardened mode a password written
//! in the file is refused. `password` is a secret reference, never a literal in hardened
//! mode.

use std::fmt;
use std::time::Duration;

use super::fields::{key_prefix, url_field};
use super::redis_topology::{self, RedisTopology};
use crate::config::yaml::{Cx, Map};
use crate::secrets::{SecretRef, redact_url};

/// The Redis URL used when neither `redis.url` nor `FERRY_REDIS_URL` is set.
pub const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379";

/// The keys `redis:` reads here.
const OWN_KEYS: &[&str] = &["url", "password", "key_prefix", "delivery_retention"];

/// The keys of the `redis:` section: `OWN_KEYS` and those `redis_topology.rs` reads
/// (`cluster_nodes`, `sentinel`).
pub(crate) const KEYS: &[&str] = &{
    let mut keys = [""; OWN_KEYS.len() + redis_topology::KEYS.len()];
    let mut i = 0;
    while i < keys.len() {
        keys[i] = if i < OWN_KEYS.len() {
            OWN_KEYS[i]
        } else {
            redis_topology::KEYS[i - OWN_KEYS.len()]
        };
        i += 1;
    }
    keys
};

/// Redis settings. `Debug` hides the URL's password.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisSettings {
    /// `redis.url`, else `FERRY_REDIS_URL`, else [`DEFAULT_REDIS_URL`]. May hold a password:
    /// print it with [`redact_url`].
    pub url: String,
    /// `redis.password`: a secret reference, used when the URL carries none.
    pub password: Option<SecretRef>,
    /// `redis.cluster_nodes` or `redis.sentinel` instead of the single node of `url`
    /// (see `redis_topology.rs`).
    pub topology: RedisTopology,
    /// `redis.key_prefix` (default `ferry`): every key starts with it.
    pub key_prefix: String,
    /// `redis.delivery_retention` (default 90 days): how long a delivery record is kept.
    pub delivery_retention: Duration,
}

impl Default for RedisSettings {
    fn default() -> Self {
        RedisSettings {
            url: DEFAULT_REDIS_URL.to_string(),
            password: None,
            topology: RedisTopology::Single,
            key_prefix: "ferry".to_string(),
            delivery_retention: Duration::from_secs(90 * 86_400),
        }
    }
}

impl fmt::Debug for RedisSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisSettings")
            .field("url", &redact_url(&self.url))
            .field("password", &self.password)
            .field("topology", &self.topology)
            .field("key_prefix", &self.key_prefix)
            .field("delivery_retention", &self.delivery_retention)
            .finish()
    }
}

/// Reads the `redis:` section (`None` when absent), with `env` for `FERRY_REDIS_URL`.
pub(crate) fn read(
    cx: &mut Cx<'_>,
    section: Option<&Map<'_>>,
    hardened: bool,
    env: &dyn Fn(&str) -> Option<String>,
) -> RedisSettings {
    let mut settings = RedisSettings::default();
    if let Some(topology) = redis_topology::read(cx, section, hardened) {
        settings.topology = topology;
    }
    if let Some(url) = url_field(cx, section, "FERRY_REDIS_URL", hardened, env) {
        settings.url = url;
    }
    let Some(redis) = section else {
        return settings;
    };
    settings.password = redis.get("password").and_then(|f| f.secret(cx, hardened));
    if let Some(prefix) = key_prefix(cx, redis, "key_prefix") {
        settings.key_prefix = prefix;
    }
    if let Some(d) = redis
        .get("delivery_retention")
        .and_then(|f| f.positive_duration(cx))
    {
        settings.delivery_retention = d;
    }
    settings
}

#[cfg(test)]
mod tests {
    use super::super::test_support::load;
    use super::*;

    #[test]
    fn defaults_environment_and_file() {
        let (settings, errors) = load("", &[]);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(settings.redis, RedisSettings::default());
        let env = [("FERRY_REDIS_URL", "redis://env-host")];
        let (settings, _) = load("", &env);
        assert_eq!(settings.redis.url, "redis://env-host");
        let (settings, errors) = load(
            "redis:\n  url: redis://file-host\n  key_prefix: acme\n  delivery_retention: 7d\n",
            &env,
        );
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(settings.redis.url, "redis://file-host");
        assert_eq!(settings.redis.key_prefix, "acme");
        assert_eq!(
            settings.redis.delivery_retention,
            Duration::from_secs(7 * 86_400)
        );
    }

    #[test]
    fn hardened_mode_refuses_a_password_in_the_url_and_never_prints_it() {
        let text = "security:\n  hardened_mode: true\nredis:\n  url: redis://:Hunter2@h:6379\n";
        let (settings, errors) = load(text, &[]);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].field, "redis.url");
        assert!(!errors[0].to_string().contains("Hunter2"));
        assert_eq!(settings.redis.url, DEFAULT_REDIS_URL);
        let (settings, errors) = load(&text.replace("true", "false"), &[]);
        assert!(errors.is_empty(), "{errors:?}");
        assert!(!format!("{settings:?}").contains("Hunter2"));
    }
}
