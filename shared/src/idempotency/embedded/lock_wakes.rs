//! [`LockWakes`]: how a flow lock's release on the embedded store wakes a run waiting for it
//! in the same process, in place of Redis' wake list and `BLPOP` (see `flow_lock.rs`).
//!
//! One [`Notify`] per flow: [`LockWakes::wake`] (after an unlock) stores one permit when no
//! one is waiting, so a release between a waiter's failed try and its wait is not missed, as
//! the one-element wake list does for Redis. Every store of this process on the same file
//! shares one set of wake-ups ([`LockWakes::for_file`]). Another process on the same file (a
//! `ferry-worker run` beside a standalone node) is not woken: its waiter looks again after
//! the store's `flow_lock_poll`, the same safety net as for a holder that died.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use tokio::sync::Notify;

/// The wake-ups of one store's flow-lock waiters, by wake key. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct LockWakes {
    by_key: Arc<Mutex<HashMap<String, Arc<Notify>>>>,
}

impl LockWakes {
    /// The wake-ups shared by every store of this process opened on the file at `path`.
    pub(crate) fn for_file(path: &Path) -> LockWakes {
        static BY_FILE: LazyLock<Mutex<HashMap<PathBuf, LockWakes>>> =
            LazyLock::new(Mutex::default);
        let file = std::path::absolute(path).unwrap_or_else(|_| path.to_owned());
        let mut map = BY_FILE
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        map.entry(file).or_default().clone()
    }

    fn notify(&self, key: &str) -> Arc<Notify> {
        let mut map = self
            .by_key
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Arc::clone(map.entry(key.to_owned()).or_default())
    }

    /// Wakes one waiter on `key` (or the next one to wait).
    pub(crate) fn wake(&self, key: &str) {
        self.notify(key).notify_one();
    }

    /// Waits up to `bound` for a wake-up on `key`; `true` when one came.
    pub(crate) async fn wait(&self, key: &str, bound: Duration) -> bool {
        let notify = self.notify(key);
        tokio::time::timeout(bound, notify.notified()).await.is_ok()
    }
}
