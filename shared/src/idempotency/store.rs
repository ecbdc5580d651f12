//! [`Store`]: the handle on the idempotency store, Redis or the embedded file (`backend.rs`),
//! and what its operations share. The operations live in files named for what they do:
//! claims in `claim.rs`, commits and records in `commit.rs`, flow locks in `flow_lock.rs`,
//! scheduler ticks in `tick.rs`, covered runs in `coverage.rs`.
//!
//! Redis: one shared connection per store (`connection.rs`: one node, a Cluster or a
//! Sentinel-watched master, see `link.rs`); each operation is one command or one Lua script,
//! retried after a connection error. Every operation that changes two keys is a script whose
//! keys all carry one flow's hash tag (so it is valid on a Cluster), so a crash between two
//! steps cannot leave a claim without its record or the other way round.
//!
//! Embedded: one SQLite file (`embedded/`); each operation is one `IMMEDIATE` transaction,
//! the twin of the Redis script, under the same key names.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use redis::FromRedisValue;
use tracing::{Instrument, debug, info_span, warn};

use super::backend::Backend;
use super::config::StoreConfig;
use super::connection::{Connection, Request};
use super::coverage::FullRuns;
use super::embedded::{EmbeddedDb, LockWakes};
use super::error::IdempotencyError;
use super::flow_lock::FlowLocks;
use super::keys::{self, FlowKeys};
use super::liveness;
use super::record::DeliveryRecord;
use super::tick::Ticks;

/// The idempotency store: claims, delivery records, flow locks and scheduler ticks, in
/// Redis or in the embedded file. Cheap to clone (one shared, self-healing connection, or
/// one shared database handle).
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    backend: Backend,
    /// In-process wake-ups of flow-lock waiters (embedded store; see `flow_lock.rs`).
    wakes: LockWakes,
    /// The flow-lock waiters' safety-net poll (see `flow_lock.rs`).
    flow_lock_poll: Duration,
    /// The URL with its password redacted, or the embedded file: safe for messages and spans.
    url: String,
    prefix: String,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("url", &self.inner.url)
            .field("prefix", &self.inner.prefix)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Connects to Redis, or opens the embedded file when `config.embedded` names one, and
    /// checks the connection.
    ///
    /// Fails with [`ErrorKind::Unavailable`](super::ErrorKind::Unavailable) when Redis
    /// cannot be reached (the caller decides whether to wait or stop), with
    /// [`ErrorKind::Config`](super::ErrorKind::Config) for an unusable URL or prefix.
    pub async fn connect(config: &StoreConfig) -> Result<Store, IdempotencyError> {
        let url = config.describe();
        keys::check_prefix(&config.key_prefix)?;
        let span = info_span!("idempotency.connect", store = %url);
        async {
            let backend = match &config.embedded {
                Some(path) => Backend::Embedded(EmbeddedDb::open(path).await?),
                None => Backend::Redis(Connection::open(config, &url).await?),
            };
            let store = Store {
                inner: Arc::new(Inner {
                    backend,
                    wakes: config
                        .embedded
                        .as_deref()
                        .map(LockWakes::for_file)
                        .unwrap_or_default(),
                    flow_lock_poll: config.flow_lock_poll,
                    url,
                    prefix: config.key_prefix.clone(),
                }),
            };
            store.ping().await?;
            debug!("connected to the idempotency store");
            Ok(store)
        }
        .instrument(span)
        .await
    }

    /// Checks that the store answers (for readiness probes).
    pub async fn ping(&self) -> Result<(), IdempotencyError> {
        if let Backend::Embedded(db) = self.backend() {
            return db
                .call("ping", |tx| {
                    tx.query_row("SELECT 1", [], |row| row.get::<_, i64>(0))
                })
                .await
                .map(drop);
        }
        let reply: String = self.run("ping", &Request::Cmd(redis::cmd("PING"))).await?;
        if reply == "PONG" {
            Ok(())
        } else {
            Err(self.unexpected("ping", format!("PING answered {reply:?}")))
        }
    }

    /// The server settings that weaken ferry's guarantees (see `durability.rs`). None for
    /// the embedded store: its file is opened with `synchronous = FULL` (every committed
    /// transaction is on disk before it returns) and nothing is ever evicted, so there is no
    /// setting to get wrong.
    pub async fn durability_warnings(
        &self,
    ) -> Result<Vec<super::DurabilityWarning>, IdempotencyError> {
        match self.backend() {
            Backend::Redis(conn) => super::durability::check(conn).await,
            Backend::Embedded(_) => Ok(Vec::new()),
        }
    }

    /// The key prefix this store writes under.
    pub fn key_prefix(&self) -> &str {
        &self.inner.prefix
    }

    /// Where the store lives, for the audit trail (`audit/store.rs`), which lives beside the
    /// flow's other keys.
    pub(crate) fn backend(&self) -> &Backend {
        &self.inner.backend
    }

    /// The embedded store's file, when this store is one (the standalone node keeps its run
    /// queue there too); `None` on Redis.
    pub fn embedded(&self) -> Option<&EmbeddedDb> {
        match &self.inner.backend {
            Backend::Embedded(db) => Some(db),
            Backend::Redis(_) => None,
        }
    }

    /// Where the store lives, safe for messages (a Redis URL redacted, or the file).
    pub fn describe(&self) -> &str {
        &self.inner.url
    }

    /// The scheduler's tick claims (`tick.rs`).
    pub fn ticks(&self) -> Ticks<'_> {
        Ticks::new(self)
    }

    /// The flow locks: one run of a flow at a time (`flow_lock.rs`).
    pub fn flow_locks(&self) -> FlowLocks<'_> {
        FlowLocks::new(self)
    }

    /// The record of each flow's latest full run (`coverage.rs`).
    pub fn full_runs(&self) -> FullRuns<'_> {
        FullRuns::new(self)
    }

    /// The keys of one flow under this store's prefix.
    pub(crate) fn flow_keys(&self, flow_id: &str) -> FlowKeys {
        FlowKeys::new(&self.inner.prefix, flow_id)
    }

    /// The in-process wake-ups of flow-lock waiters (embedded store).
    pub(super) fn lock_wakes(&self) -> &LockWakes {
        &self.inner.wakes
    }

    /// How often a flow-lock waiter looks again without a wake-up (see `flow_lock.rs`).
    pub(super) fn flow_lock_poll(&self) -> Duration {
        self.inner.flow_lock_poll
    }

    /// Deletes `key` if its holder is a dead process of this host (`liveness.rs`) and the
    /// key still holds that holder's token (compare-and-delete: anyone who took the key
    /// meanwhile keeps it). Returns whether the holder was judged dead: the caller then tries
    /// once more to take the key.
    pub(super) async fn remove_dead_holder(
        &self,
        key: &str,
        holder: &str,
        what: &'static str,
    ) -> Result<bool, IdempotencyError> {
        if !liveness::holder_is_dead(holder) {
            return Ok(false);
        }
        let removed = self.backend().delete_if_owner(key, holder).await?;
        warn!(holder = %holder, removed, "the {what}'s holder is a dead process of this host: taking it over");
        Ok(true)
    }

    /// `GET key` as an optional string (either backend).
    pub(super) async fn get(
        &self,
        key: &str,
        op: &'static str,
    ) -> Result<Option<String>, IdempotencyError> {
        self.backend().get(key, op).await
    }

    pub(super) fn unexpected(&self, op: &'static str, detail: String) -> IdempotencyError {
        IdempotencyError::unexpected(&self.inner.url, op, detail)
    }

    /// Sends `req` over the store's Redis connection (with its retries). Only the Redis
    /// branch of an operation calls this; on the embedded store it is a configuration error
    /// naming the operation (never a panic).
    pub(super) async fn run<T: FromRedisValue>(
        &self,
        op: &'static str,
        req: &Request<'_>,
    ) -> Result<T, IdempotencyError> {
        match self.backend() {
            Backend::Redis(conn) => conn.run(op, req).await,
            Backend::Embedded(db) => Err(IdempotencyError::Config {
                reason: format!(
                    "{op} has no embedded twin: the embedded store ({}) cannot run it",
                    db.path().display()
                ),
            }),
        }
    }
}

/// A unique owner token: the caller's readable id, a random part, and the stamp of this
/// process (see `liveness.rs`).
pub(super) fn token(owner: &str) -> String {
    format!(
        "{owner}/{}{}",
        uuid::Uuid::new_v4(),
        liveness::token_suffix()
    )
}

pub(super) fn decode(key: &str, json: &str) -> Result<DeliveryRecord, IdempotencyError> {
    decode_json(key, json)
}

pub(super) fn decode_json<T: serde::de::DeserializeOwned>(
    key: &str,
    json: &str,
) -> Result<T, IdempotencyError> {
    serde_json::from_str(json).map_err(|source| IdempotencyError::Serialization {
        key: key.to_owned(),
        action: "decoded",
        source,
    })
}
