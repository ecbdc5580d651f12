//! [`Backend`]: which store a [`Store`](super::Store) and its leases talk to, Redis or the
//! embedded SQLite file, and the few operations every part of the store shares (a lease's
//! compare-and-renew and compare-and-delete, a plain read). Each store operation matches on
//! the backend once: the Redis branch sends its command or script, the embedded branch runs
//! its twin (`embedded/`) in one transaction, with the same semantics.

use std::time::Duration;

use super::connection::{Connection, Request};
use super::embedded::{EmbeddedDb, kv};
use super::error::IdempotencyError;

/// Where the store's keys live. Cheap to clone (both hold a shared handle).
#[derive(Clone)]
pub(crate) enum Backend {
    /// Redis: one node, a cluster or a sentinel's master.
    Redis(Connection),
    /// One SQLite file on this machine.
    Embedded(EmbeddedDb),
}

impl Backend {
    /// Compare-and-renew: `key` lasts `lease` from now if it still holds `token`.
    pub(crate) async fn renew_if_owner(
        &self,
        key: &str,
        token: &str,
        lease: Duration,
    ) -> Result<bool, IdempotencyError> {
        match self {
            Backend::Redis(conn) => conn.renew_if_owner(key, token, lease).await,
            Backend::Embedded(db) => {
                let (key, token) = (key.to_owned(), token.to_owned());
                db.call("renew", move |tx| {
                    kv::renew_if_owner(tx, &key, &token, lease)
                })
                .await
            }
        }
    }

    /// Compare-and-delete: deletes `key` if it still holds `token`.
    pub(crate) async fn delete_if_owner(
        &self,
        key: &str,
        token: &str,
    ) -> Result<bool, IdempotencyError> {
        match self {
            Backend::Redis(conn) => conn.delete_if_owner(key, token).await,
            Backend::Embedded(db) => {
                let (key, token) = (key.to_owned(), token.to_owned());
                db.call("release", move |tx| kv::delete_if_owner(tx, &key, &token))
                    .await
            }
        }
    }

    /// `GET key`: the value, if the key exists (and has not expired).
    pub(crate) async fn get(
        &self,
        key: &str,
        op: &'static str,
    ) -> Result<Option<String>, IdempotencyError> {
        match self {
            Backend::Redis(conn) => {
                let mut cmd = redis::cmd("GET");
                cmd.arg(key);
                conn.run(op, &Request::Cmd(cmd)).await
            }
            Backend::Embedded(db) => {
                let key = key.to_owned();
                db.call(op, move |tx| kv::get(tx, &key)).await
            }
        }
    }
}
