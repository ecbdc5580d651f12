//! One store test, any store: [`TestStore`] gives a test its own [`Store`] on the machine's
//! Redis (under a key prefix deleted at the end), on a private 3-master Redis Cluster, or in
//! an embedded SQLite file of its own; and reads or tampers with the stored keys directly
//! (`redis-cli` for Redis, the file's rows for the embedded store), so that one test body
//! asserts the same semantics of both stores.
//!
//! [`on_both_stores!`](crate::on_both_stores) turns a list of `async fn name(target: Target)`
//! into a `redis::name` and an `embedded::name` test.

use std::path::{Path, PathBuf};
use std::process::Command;

use ferry_shared::idempotency::{Store, StoreConfig};
use tempfile::TempDir;

use crate::fleet::redis_url;
use crate::keyspace::delete_prefix;
use crate::redis_cluster::RedisCluster;

/// Where a store test runs.
pub enum Target {
    /// The machine's Redis (127.0.0.1:6379 or `FERRY_TEST_REDIS_URL`).
    Redis,
    /// A private 3-master Redis Cluster, started for the test.
    Cluster(RedisCluster),
    /// An embedded store in a file of its own (`state.db` in a temporary folder).
    Embedded(TempDir),
}

impl Target {
    /// A private Redis Cluster (panics when it cannot be started).
    pub fn cluster() -> Target {
        Target::Cluster(RedisCluster::start().unwrap_or_else(|e| panic!("{e:#}")))
    }

    /// A fresh embedded store's folder.
    pub fn embedded() -> Target {
        Target::Embedded(tempfile::tempdir().expect("temporary folder"))
    }
}

/// One test's store on its target, with a key prefix of its own.
pub struct TestStore {
    /// The key prefix of every key the test writes.
    pub prefix: String,
    target: Target,
}

impl TestStore {
    /// `ferry-test:<test>:<random>` on `target`.
    pub fn new(target: Target, test: &str) -> Self {
        TestStore {
            prefix: format!("ferry-test:{test}:{:016x}", rand::random::<u64>()),
            target,
        }
    }

    /// Whether this is the embedded store.
    pub fn is_embedded(&self) -> bool {
        matches!(self.target, Target::Embedded(_))
    }

    /// The embedded store's file (`None` on Redis).
    pub fn embedded_path(&self) -> Option<PathBuf> {
        match &self.target {
            Target::Embedded(dir) => Some(dir.path().join("state.db")),
            _ => None,
        }
    }

    /// Store settings for this target and prefix.
    pub fn config(&self) -> StoreConfig {
        let mut config = match &self.target {
            Target::Embedded(_) => StoreConfig::embedded(self.embedded_path().expect("file")),
            Target::Redis => StoreConfig::new(redis_url()),
            Target::Cluster(cluster) => {
                let mut config = StoreConfig::new(redis_url());
                config.topology = ferry_shared::config::RedisTopology::Cluster {
                    nodes: cluster.urls(),
                };
                config
            }
        };
        config.key_prefix = self.prefix.clone();
        config
    }

    /// A store (each call its own connection, as another process would have).
    pub async fn store(&self) -> Store {
        Self::connect(&self.config()).await
    }

    /// A store with `config` (built from [`TestStore::config`]).
    pub async fn connect(config: &StoreConfig) -> Store {
        Store::connect(config).await.unwrap_or_else(|e| {
            panic!("{e}\n(start Redis on 127.0.0.1:6379, or set FERRY_TEST_REDIS_URL)")
        })
    }

    /// The value stored under `key`, if it exists (and has not expired).
    pub fn get(&self, key: &str) -> Option<String> {
        match self.embedded_path() {
            Some(path) => rows(&path, |conn| {
                conn.query_row(
                    "SELECT value FROM kv WHERE key = ?1 AND (expires_at_ms IS NULL OR expires_at_ms > ?2)",
                    rusqlite::params![key, now_ms()],
                    |row| row.get(0),
                )
                .ok()
            }),
            None => {
                let exists = self.cli(&["EXISTS", key]) == "1";
                exists.then(|| self.cli(&["GET", key]))
            }
        }
    }

    /// Writes `value` under `key`, without expiry (a tamperer, or an older ferry).
    pub fn set(&self, key: &str, value: &str) {
        match self.embedded_path() {
            Some(path) => rows(&path, |conn| {
                conn.execute(
                    "INSERT OR REPLACE INTO kv (key, value, expires_at_ms) VALUES (?1, ?2, NULL)",
                    rusqlite::params![key, value],
                )
                .expect("set");
            }),
            None => {
                self.cli(&["SET", key, value]);
            }
        }
    }

    /// Deletes `key`.
    pub fn del(&self, key: &str) {
        match self.embedded_path() {
            Some(path) => rows(&path, |conn| {
                conn.execute("DELETE FROM kv WHERE key = ?1", rusqlite::params![key])
                    .expect("del");
            }),
            None => {
                self.cli(&["DEL", key]);
            }
        }
    }

    /// Milliseconds until `key` expires; `None` when it does not exist or never expires.
    pub fn ttl_ms(&self, key: &str) -> Option<i64> {
        match self.embedded_path() {
            Some(path) => rows(&path, |conn| {
                let now = now_ms();
                conn.query_row(
                    "SELECT expires_at_ms FROM kv WHERE key = ?1 AND expires_at_ms > ?2",
                    rusqlite::params![key, now],
                    |row| row.get::<_, i64>(0),
                )
                .ok()
                .map(|at| at - now)
            }),
            None => {
                Some(self.cli(&["PTTL", key]).parse::<i64>().expect("PTTL")).filter(|ms| *ms >= 0)
            }
        }
    }

    /// `redis-cli` on the Redis target (`-c` on the cluster, to follow `MOVED`).
    fn cli(&self, args: &[&str]) -> String {
        let mut cmd = Command::new("redis-cli");
        match &self.target {
            Target::Cluster(cluster) => cmd.args(cluster.cli_args()),
            _ => cmd.args(["-u", &redis_url()]),
        };
        let out = cmd.args(args).output().expect("running redis-cli");
        assert!(out.status.success(), "redis-cli {args:?}: {out:?}");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }
}

impl Drop for TestStore {
    fn drop(&mut self) {
        // A private cluster and an embedded file go with their folders.
        if let Target::Redis = self.target {
            delete_prefix(&self.prefix);
        }
    }
}

fn now_ms() -> i64 {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis();
    i64::try_from(ms).expect("ms")
}

/// Runs `work` on a connection of its own to the embedded store's file (as another process
/// would), waiting for the store's writers.
fn rows<T>(path: &Path, work: impl FnOnce(&rusqlite::Connection) -> T) -> T {
    let conn = rusqlite::Connection::open(path)
        .unwrap_or_else(|e| panic!("opening {}: {e}", path.display()));
    conn.busy_timeout(std::time::Duration::from_secs(10))
        .expect("busy timeout");
    work(&conn)
}

/// Turns `async fn name(target: Target)` store tests into `redis::name` (the machine's
/// Redis) and `embedded::name` (an embedded file of the test's own) tests, each on a
/// two-thread runtime.
#[macro_export]
macro_rules! on_both_stores {
    ($($name:ident),* $(,)?) => {
        mod redis {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::store_target::Target::Redis).await
                }
            )*
        }
        mod embedded {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::store_target::Target::embedded()).await
                }
            )*
        }
    };
}
