//! A key prefix of one test in the machine's Redis (or `FERRY_TEST_REDIS_URL`), and
//! `redis-cli` to look at keys directly.
//!
//! Each test writes under its own prefix and deletes it when done, so the tests run in
//! parallel and leave Redis as they found it.

use std::process::Command;

use ferry_shared::idempotency::{Store, StoreConfig};

use crate::fleet::redis_url;

/// A key prefix of one test, deleted (all keys under it) when dropped.
pub struct Prefix(pub String);

impl Prefix {
    /// `ferry-test-<test>-<random>` (valid in `ferry.yaml` too).
    pub fn new(test: &str) -> Self {
        Prefix(format!("ferry-test-{test}-{:016x}", rand::random::<u64>()))
    }

    /// Store settings under this prefix.
    pub fn config(&self) -> StoreConfig {
        let mut config = StoreConfig::new(redis_url());
        config.key_prefix = self.0.clone();
        config
    }

    /// A store under this prefix; panics with a hint when Redis is not there.
    pub async fn store(&self) -> Store {
        Self::connect(&self.config()).await
    }

    /// A store with `config` (built from [`Prefix::config`]).
    pub async fn connect(config: &StoreConfig) -> Store {
        Store::connect(config).await.unwrap_or_else(|e| {
            panic!("{e}\n(start Redis on 127.0.0.1:6379, or set FERRY_TEST_REDIS_URL)")
        })
    }
}

impl Drop for Prefix {
    fn drop(&mut self) {
        delete_prefix(&self.0);
    }
}

/// Runs `redis-cli` against the test Redis (to inspect or tamper with keys directly).
pub fn redis_cli(args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .args(["-u", &redis_url()])
        .args(args)
        .output()
        .expect("running redis-cli (install redis-tools)");
    assert!(out.status.success(), "redis-cli {args:?}: {out:?}");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Deletes every key under `prefix`; best effort (it runs in `Drop`, maybe while panicking).
pub fn delete_prefix(prefix: &str) {
    let _ = Command::new("redis-cli")
        .args(["-u", &redis_url(), "EVAL"])
        .arg("for _, k in ipairs(redis.call('KEYS', ARGV[1])) do redis.call('DEL', k) end")
        .args(["0", &format!("{prefix}:*")])
        .output();
}
