//! [`StoreConfig`]: how to reach the idempotency store (Redis, or the embedded file when
//! `store.kind` is `embedded`), already resolved (the password is a value, not a reference).
//! Built by the binaries' start-up from `ferry.yaml`.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use super::keys;
use crate::config::{Config, RedisTopology};
use crate::secrets::redact_url;
use crate::secrets::{Resolver, Secret, SecretError};

/// `ferry.yaml`.
#[derive(Clone)]
pub struct StoreConfig {
    /// `redis://host:port/db` or `rediss://host:port/db` (TLS). May carry a password, which
    /// is never logged; [`StoreConfig::password`] overrides it. Used when `topology` is
    /// [`RedisTopology::Single`].
    pub url: String,
    /// One node (`url`), a Redis Cluster, or a master found through Sentinel.
    pub topology: RedisTopology,
    /// The password, when it comes from a secret store rather than the URL.
    pub password: Option<Secret>,
    /// First part of every key (see the key layout); letters, digits, `-_.:` only.
    pub key_prefix: String,
    /// PEM CA certificate(s) to trust for `rediss://` instead of the system's roots.
    pub ca_pem: Option<Vec<u8>>,
    /// Time allowed for one connection attempt (TCP, TLS, AUTH).
    pub connect_timeout: Duration,
    /// Time allowed for Redis to answer one command.
    pub response_timeout: Duration,
    /// How often a run waiting for its flow lock tries again without being woken (the
    /// safety net for a holder that died without releasing it; see `flow_lock.rs`).
    pub flow_lock_poll: Duration,
    /// The embedded store's file (`store.kind: embedded`): when set, the store is this
    /// SQLite file and every Redis field above is unused.
    pub embedded: Option<PathBuf>,
}

impl StoreConfig {
    /// Where the store lives, safe for messages and spans (passwords redacted).
    pub fn describe(&self) -> String {
        match &self.embedded {
            Some(path) => format!("embedded store {}", path.display()),
            None => self.topology.describe(&self.url),
        }
    }

    /// Settings for `url` with the default prefix and timeouts (5 s connect, 5 s response,
    /// a flow-lock waiter's safety-net poll every second).
    pub fn new(url: impl Into<String>) -> Self {
        StoreConfig {
            url: url.into(),
            topology: RedisTopology::Single,
            password: None,
            key_prefix: keys::DEFAULT_PREFIX.to_owned(),
            ca_pem: None,
            connect_timeout: Duration::from_secs(5),
            response_timeout: Duration::from_secs(5),
            flow_lock_poll: Duration::from_secs(1),
            embedded: None,
        }
    }

    /// Settings for the embedded store in the SQLite file at `path` (created if missing; its
    /// folder must exist), with the default prefix and flow-lock poll.
    pub fn embedded(path: impl Into<PathBuf>) -> Self {
        StoreConfig {
            embedded: Some(path.into()),
            ..StoreConfig::new("redis://unused.invalid")
        }
    }
}

impl fmt::Debug for StoreConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoreConfig")
            .field("url", &redact_url(&self.url))
            .field("topology", &self.topology)
            .field("password", &self.password)
            .field("key_prefix", &self.key_prefix)
            .field("ca_pem", &self.ca_pem.as_ref().map(|_| "set"))
            .field("connect_timeout", &self.connect_timeout)
            .field("response_timeout", &self.response_timeout)
            .field("flow_lock_poll", &self.flow_lock_poll)
            .field("embedded", &self.embedded)
            .finish()
    }
}

impl StoreConfig {
    /// The settings of `ferry.yaml`'s `store` and `redis` sections, the password resolved
    /// from its reference: what the binaries' start-up and the flow engine both connect
    /// with. With `store.kind: embedded` the embedded file, and Redis is not looked at.
    pub async fn from_config(config: &Config, resolver: &Resolver) -> Result<Self, SecretError> {
        let redis = &config.settings.redis;
        if let Some(path) = config.settings.store.embedded_path() {
            let mut store_config = StoreConfig::embedded(path);
            store_config.key_prefix = redis.key_prefix.clone();
            return Ok(store_config);
        }
        let mut store_config = StoreConfig::new(redis.url.clone());
        store_config.topology = redis.topology.clone();
        store_config.key_prefix = redis.key_prefix.clone();
        if let Some(reference) = &redis.password {
            store_config.password = Some(resolver.resolve(reference).await?);
        }
        Ok(store_config)
    }
}
