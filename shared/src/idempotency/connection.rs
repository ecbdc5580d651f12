//! The connection to Redis and its retry loop: the one place that sends commands, shared by
//! the store (claims, records, locks, ticks) and the leases (renewals, releases).
//!
//! Blocking commands (`BLPOP`, see `flow_lock.rs`) never go through it: a blocking command
//! holds the connection it runs on, and this one is multiplexed between every operation of
//! the process. [`Connection::blocking`] lends a connection of their own.
//!
//! The connection reconnects by itself (see `link.rs` for one node, a cluster, a sentinel's
//! master); the command that met the broken connection still fails, so [`Connection::run`]
//! retries it a few times. Every request ferry
//! sends is safe to repeat: the scripts and `SET NX` recognise their own earlier effect by
//! the owner token.

use std::collections::BTreeMap;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use redis::{Cmd, FromRedisValue, RedisError, Script, Value};
use tracing::warn;

use super::config::StoreConfig;
use super::error::{IdempotencyError, is_unavailable};
pub(crate) use super::link::Request;
use super::link::{self, Dedicated, Link};

/// How many times a command is retried after a connection error (so `1 + RETRIES` tries).
const RETRIES: u32 = 2;
/// Pause before the first retry; doubled for the next.
const RETRY_PAUSE: Duration = Duration::from_millis(100);
/// Idle dedicated connections kept for blocking commands; more are closed after use.
const MAX_SPARE_BLOCKING: usize = 8;

/// One shared, self-healing connection (one node, a cluster, or a sentinel's master; see
/// `link.rs`). Cheap to clone.
#[derive(Clone)]
pub(crate) struct Connection {
    link: Arc<dyn Link>,
    /// Idle dedicated connections for blocking commands (see [`Connection::blocking`]).
    spares: Arc<Spares>,
    /// Where the store lives, passwords redacted: safe for messages and spans.
    url: String,
}

impl Connection {
    /// Opens the connection (`url` is the redacted description, for messages).
    pub(crate) async fn open(config: &StoreConfig, url: &str) -> Result<Self, IdempotencyError> {
        Ok(Connection {
            link: link::open(config, url).await?,
            spares: Arc::new(Spares::default()),
            url: url.to_owned(),
        })
    }

    /// A connection of its own for one blocking command (an idle one from an earlier
    /// command, else a new one to the same node, master or cluster, with the same
    /// credentials and TLS; see `link.rs`). It has no response timeout: the caller bounds
    /// each command itself. Give it back with [`Blocking::give_back`] once its command
    /// answered; one dropped instead (cancelled or failed, so it may still be blocked in
    /// Redis) is closed.
    pub(crate) async fn blocking(&self) -> Result<Blocking, IdempotencyError> {
        let spare = self
            .spares
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .pop();
        let conn = match spare {
            Some(conn) => conn,
            None => self
                .link
                .dedicated()
                .await
                .map_err(|e| IdempotencyError::from_redis(&self.url, "connect", e))?,
        };
        Ok(Blocking {
            conn,
            spares: Arc::clone(&self.spares),
        })
    }

    /// Sends `req`, retrying up to [`RETRIES`] times after a connection error (the
    /// connection reconnects meanwhile). Every request the store sends is safe to repeat:
    /// scripts and `SET NX` recognise their own earlier effect by the token.
    pub(crate) async fn run<T: FromRedisValue>(
        &self,
        op: &'static str,
        req: &Request<'_>,
    ) -> Result<T, IdempotencyError> {
        let mut pause = RETRY_PAUSE;
        let mut attempt = 0;
        loop {
            let result = self
                .link
                .send(req)
                .await
                .and_then(|value| T::from_redis_value(value).map_err(RedisError::from));
            match result {
                Ok(value) => return Ok(value),
                Err(e) if attempt < RETRIES && is_unavailable(&e) => {
                    attempt += 1;
                    warn!(op, attempt, error = %e, "Redis command failed; retrying");
                    tokio::time::sleep(pause).await;
                    pause *= 2;
                }
                Err(e) => return Err(IdempotencyError::from_redis(&self.url, op, e)),
            }
        }
    }

    /// `CONFIG GET name` on every master (one node, the sentinels' master, or each master
    /// of a cluster), by master address (empty when there is only one). A master that
    /// refuses `CONFIG` or does not know `name` is absent.
    pub(crate) async fn config_get_everywhere(&self, name: &str) -> BTreeMap<String, String> {
        let mut cmd = Cmd::new();
        cmd.arg("CONFIG").arg("GET").arg(name);
        let Some(on_every_master) = self.link.on_every_master(cmd.clone()) else {
            let pairs: Option<Vec<String>> = self.run("config_get", &Request::Cmd(cmd)).await.ok();
            let value = pairs.and_then(|p| p.get(1).cloned());
            return value.map(|v| (String::new(), v)).into_iter().collect();
        };
        match on_every_master.await {
            // One reply per master, keyed by its address.
            Ok(Value::Map(replies)) => replies
                .into_iter()
                .filter_map(|(node, reply)| {
                    let node = String::from_redis_value(node).ok()?;
                    let pairs = Vec::<String>::from_redis_value(reply).ok()?;
                    Some((node, pairs.get(1)?.clone()))
                })
                .collect(),
            _ => BTreeMap::new(),
        }
    }

    /// Compare-and-`PEXPIRE`: renews `key` for `lease` if it still holds `token`.
    pub(crate) async fn renew_if_owner(
        &self,
        key: &str,
        token: &str,
        lease: Duration,
    ) -> Result<bool, IdempotencyError> {
        static RENEW: LazyLock<Script> = LazyLock::new(|| {
            Script::new(
                r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
",
            )
        });
        let mut inv = RENEW.prepare_invoke();
        inv.key(key).arg(token).arg(millis(lease));
        let renewed: i64 = self.run("renew", &Request::Script(inv)).await?;
        Ok(renewed == 1)
    }

    /// Compare-and-`DEL`: deletes `key` if it still holds `token`.
    pub(crate) async fn delete_if_owner(
        &self,
        key: &str,
        token: &str,
    ) -> Result<bool, IdempotencyError> {
        static RELEASE: LazyLock<Script> = LazyLock::new(|| {
            Script::new(
                r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
",
            )
        });
        let mut inv = RELEASE.prepare_invoke();
        inv.key(key).arg(token);
        let deleted: i64 = self.run("release", &Request::Script(inv)).await?;
        Ok(deleted == 1)
    }
}

/// Idle dedicated connections.
#[derive(Default)]
struct Spares(Mutex<Vec<Box<dyn Dedicated>>>);

/// A dedicated connection lent for one blocking command at a time (see
/// [`Connection::blocking`]).
pub(crate) struct Blocking {
    conn: Box<dyn Dedicated>,
    spares: Arc<Spares>,
}

impl Blocking {
    /// One try of `req` on this connection (no retry, no response timeout).
    pub(crate) async fn send<T: FromRedisValue>(
        &mut self,
        req: &Request<'_>,
    ) -> redis::RedisResult<T> {
        let value = self.conn.send(req).await?;
        T::from_redis_value(value).map_err(RedisError::from)
    }

    /// Returns the connection to the idle ones, after its command answered.
    pub(crate) fn give_back(self) {
        let mut spares = self
            .spares
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if spares.len() < MAX_SPARE_BLOCKING {
            spares.push(self.conn);
        }
    }
}

/// A duration as whole milliseconds for `PX`/`PEXPIRE`, at least 1 (Redis rejects 0).
pub(crate) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}
