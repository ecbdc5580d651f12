//! [`IdempotencyError`]: what can go wrong when talking to the idempotency store, sorted
//! into kinds the caller can act on.
//!
//! The transfer engine fails closed: when the store cannot answer, no file is moved. So
//! the one question every caller asks is "can a retry help?" ([`IdempotencyError::is_transient`]).
//! Messages name the operation and the (redacted) Redis address, never a password.

use std::time::Duration;

/// The kinds of [`IdempotencyError`], for callers that branch on them (exit codes, retries).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// Redis could not be reached or did not answer in time; retrying later may help.
    Unavailable,
    /// Redis answered, but not as expected (refused command, wrong password, unexpected
    /// reply); retrying will not help until something is fixed.
    Protocol,
    /// A delivery record could not be encoded or decoded as JSON.
    Serialization,
    /// The store's configuration (URL, key prefix, CA file) is unusable.
    Config,
    /// A claim or lock was lost while work was running under it: another worker may take
    /// over, so the work must not be reported as done by this one.
    LeaseLost,
}

/// An error from the idempotency store. Never contains a secret.
#[derive(Debug, thiserror::Error)]
pub enum IdempotencyError {
    /// Redis could not be reached, dropped the connection or timed out.
    #[error(
        "the idempotency store (Redis at {url}) is unavailable during {op}: {source}; \
         no transfer runs without it. Check that Redis is running and reachable from here \
         (e.g. `redis-cli -u <url> ping`)"
    )]
    Unavailable {
        /// The Redis URL, password redacted.
        url: String,
        /// The store operation that failed (e.g. `claim`).
        op: &'static str,
        /// The client's error.
        #[source]
        source: redis::RedisError,
    },

    /// Redis answered with an error or with a reply of the wrong shape.
    #[error("the idempotency store (Redis at {url}) rejected {op}: {detail}")]
    Protocol {
        /// The Redis URL, password redacted.
        url: String,
        /// The store operation that failed.
        op: &'static str,
        /// What was wrong (the server's error or the unexpected reply).
        detail: String,
    },

    /// A delivery record is not valid JSON of the expected shape.
    #[error("delivery record {key} could not be {action}: {source}")]
    Serialization {
        /// The Redis key of the record.
        key: String,
        /// `encoded` or `decoded`.
        action: &'static str,
        /// The JSON error.
        #[source]
        source: serde_json::Error,
    },

    /// The store's configuration is unusable.
    #[error("invalid idempotency store configuration: {reason}")]
    Config {
        /// What is wrong and how to fix it.
        reason: String,
    },

    /// The lease under which work ran was lost (taken over, or not renewable in time).
    #[error(
        "lost the lease on {key} after {held:?}: {reason}; another worker may take over, \
         so this worker must not record the work as done"
    )]
    LeaseLost {
        /// The Redis key of the claim or lock.
        key: String,
        /// How long the work had been running under the lease.
        held: Duration,
        /// Why the lease is considered lost.
        reason: String,
    },

    /// The embedded store's database file refused an operation.
    #[error("the embedded store ({path}) failed during {op}: {detail}")]
    Embedded {
        /// The database file.
        path: String,
        /// The store operation that failed.
        op: &'static str,
        /// SQLite's error.
        detail: String,
        /// Whether a retry may help (busy, locked, full disk, I/O error).
        transient: bool,
    },
}

impl IdempotencyError {
    /// The kind of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::Unavailable { .. } => ErrorKind::Unavailable,
            Self::Protocol { .. } => ErrorKind::Protocol,
            Self::Serialization { .. } => ErrorKind::Serialization,
            Self::Config { .. } => ErrorKind::Config,
            Self::LeaseLost { .. } => ErrorKind::LeaseLost,
            Self::Embedded {
                transient: true, ..
            } => ErrorKind::Unavailable,
            Self::Embedded { .. } => ErrorKind::Protocol,
        }
    }

    /// Whether retrying the same operation later can succeed without a change elsewhere
    /// (Redis back up, a lost lease re-claimed by a later run).
    pub fn is_transient(&self) -> bool {
        matches!(self.kind(), ErrorKind::Unavailable | ErrorKind::LeaseLost)
    }

    /// Sorts a Redis client error into [`ErrorKind::Unavailable`] or [`ErrorKind::Protocol`].
    pub(crate) fn from_redis(url: &str, op: &'static str, err: redis::RedisError) -> Self {
        if is_unavailable(&err) {
            Self::Unavailable {
                url: url.to_owned(),
                op,
                source: err,
            }
        } else {
            Self::Protocol {
                url: url.to_owned(),
                op,
                detail: err.to_string(),
            }
        }
    }

    /// A reply that does not have the shape the store's scripts promise.
    pub(crate) fn unexpected(url: &str, op: &'static str, detail: impl Into<String>) -> Self {
        Self::Protocol {
            url: url.to_owned(),
            op,
            detail: detail.into(),
        }
    }
}

/// Whether a Redis error means "the server is not there right now" (worth a retry).
pub(crate) fn is_unavailable(err: &redis::RedisError) -> bool {
    use redis::{ErrorKind as K, ServerErrorKind as S};
    err.is_io_error()
        || err.is_timeout()
        || err.is_connection_dropped()
        || err.is_connection_refusal()
        || matches!(
            err.kind(),
            K::Server(S::BusyLoading | S::TryAgain | S::ClusterDown | S::MasterDown | S::ReadOnly)
                | K::ClusterConnectionNotFound
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_and_transience() {
        let e = IdempotencyError::Config { reason: "x".into() };
        assert_eq!(e.kind(), ErrorKind::Config);
        assert!(!e.is_transient());
        let io =
            redis::RedisError::from(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        let e = IdempotencyError::from_redis("redis://h:1", "ping", io);
        assert_eq!(e.kind(), ErrorKind::Unavailable);
        assert!(e.is_transient());
        assert!(e.to_string().contains("redis://h:1"), "{e}");
    }
}
