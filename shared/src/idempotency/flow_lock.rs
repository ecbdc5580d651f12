//! Waiting for a flow lock, and giving it back: the release wakes a waiter at once.
//!
//! Runs of one flow never overlap: a run that finds the flow locked waits (up to
//! `worker.flow_lock_wait`) for the run before it. Waiting by polling costs latency (a
//! pause of up to a second between the release and the next look, which was the whole
//! p99 of the fleet benchmark) or Redis load (short pauses). So the release is a
//! notification:
//!
//! - [`FlowLocks::unlock`] deletes the lock if it still holds our token and, in the same
//!   script, pushes a token onto the flow's wake list (`<prefix>:{flow:<flow>}:lock-wake`,
//!   same hash tag as the lock, so the script stays valid on a Redis Cluster). The list is
//!   trimmed to one element and expires after [`WAKE_TTL`], so releases nobody waited for
//!   leave at most one stale token behind (costing a waiter one extra look, nothing more).
//! - [`FlowLocks::wait`] tries the lock; when it is taken it waits on the wake
//!   list with `BLPOP` (bounded by the store's `flow_lock_poll`), then tries again. A
//!   release between the failed try and the `BLPOP` is not missed: its token is in the list
//!   already. One release wakes one waiter, which is all that can take the lock anyway.
//! - The safety net is the bound of each `BLPOP`: a holder that died never pushes (its lock
//!   expires after its lease, or is taken over when it was a dead process of this host), and
//!   a waiter whose wake-up went to a waiter that was cancelled meanwhile would sleep on; both
//!   look again after at most `flow_lock_poll`.
//!
//! On the embedded store the lock is a row (`embedded/kv.rs`), taken and released in one
//! transaction each, and the wake-up is in-process (`embedded/lock_wakes.rs`): the release
//! wakes a waiter of this process at once; a waiter in another process on the same file
//! looks again after `flow_lock_poll`.
//!
//! `BLPOP` blocks the connection it is sent on. The store's shared connection is multiplexed
//! between every claim, record and renewal of the process, so a blocking command there would
//! stall them all (and renewals that stall lose leases). Each wait therefore uses a
//! dedicated connection (see [`Connection::blocking`](super::connection::Connection): to
//! the node, the cluster or the sentinels' current master, as `link.rs` connects), kept
//! for reuse only when its command answered.

use std::sync::LazyLock;
use std::time::Duration;

use redis::Script;
use tokio::time::Instant;
use tracing::{debug, warn};

use super::backend::Backend;
use super::connection::{Request, millis};
use super::embedded::kv;
use super::error::IdempotencyError;
use super::lease::{FlowLock, Lease};
use super::store::{Store, token};

/// How long a wake token nobody took stays in the wake list.
pub const WAKE_TTL: Duration = Duration::from_secs(30);

/// Extra time a `BLPOP` reply may take beyond its own timeout before the connection is
/// given up as stuck.
const REPLY_GRACE: Duration = Duration::from_secs(5);

/// Compare-and-delete the lock, and wake one waiter.
///
/// KEYS: lock, wake list. ARGV: token, wake TTL ms. Reply: 1 released, 0 not ours.
static UNLOCK: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
redis.call('LPUSH', KEYS[2], '1')
redis.call('LTRIM', KEYS[2], 0, 0)
redis.call('PEXPIRE', KEYS[2], ARGV[2])
return 1
",
    )
});

/// What [`FlowLocks::wait`] ended with.
#[must_use = "an acquired lock must be released; a busy flow must be reported"]
#[derive(Debug)]
pub enum LockWait {
    /// The lock is ours.
    Acquired(FlowLock),
    /// Someone else held the lock for the whole wait: the flow is busy.
    Busy {
        /// The holder's owner token, when it still held the lock at the last look.
        holder: Option<String>,
        /// How long we waited.
        waited: Duration,
    },
}

/// The flow locks of a store: `store.flow_locks()`.
#[derive(Debug, Clone, Copy)]
pub struct FlowLocks<'a> {
    store: &'a Store,
}

impl<'a> FlowLocks<'a> {
    /// The flow locks kept in `store`.
    pub(super) fn new(store: &'a Store) -> Self {
        FlowLocks { store }
    }
}

impl FlowLocks<'_> {
    /// Takes the flow-wide lock for `lease` if nobody holds it (`SET NX PX`).
    #[tracing::instrument(
        name = "idempotency.lock_flow",
        skip_all,
        fields(otel.kind = "client", db.system.name = "redis", flow = flow_id, lease_ms = millis(lease), acquired)
    )]
    pub async fn try_lock(
        self,
        flow_id: &str,
        owner: &str,
        lease: Duration,
    ) -> Result<Option<FlowLock>, IdempotencyError> {
        let lock_key = self.store.flow_keys(flow_id).lock();
        let token = token(owner);
        let mut took_over = false;
        let acquired = loop {
            match self.take_or_holder(&lock_key, &token, lease).await? {
                None => break true,
                // A retry after a lost reply finds our own token: that is ours too.
                Some(holder) if holder == token => break true,
                // A dead process of this host's lock goes now, not after its lease.
                Some(holder) if !took_over => {
                    took_over = true;
                    if !self
                        .store
                        .remove_dead_holder(&lock_key, &holder, "flow lock")
                        .await?
                    {
                        break false;
                    }
                }
                _ => break false,
            }
        };
        tracing::Span::current().record("acquired", acquired);
        Ok(acquired.then(|| {
            FlowLock::new(
                Lease::new(self.store.backend().clone(), lock_key, token),
                flow_id.to_owned(),
                lease,
            )
        }))
    }

    /// `SET lock token NX PX lease`: `None` when taken, else the holder's token (`Some("")`
    /// when the lock vanished between the two looks).
    async fn take_or_holder(
        self,
        lock_key: &str,
        token: &str,
        lease: Duration,
    ) -> Result<Option<String>, IdempotencyError> {
        if let Backend::Embedded(db) = self.store.backend() {
            let (key, token) = (lock_key.to_owned(), token.to_owned());
            return db
                .call("lock_flow", move |tx| {
                    if kv::set_nx(tx, &key, &token, lease)? {
                        return Ok(None);
                    }
                    Ok(Some(kv::get(tx, &key)?.unwrap_or_default()))
                })
                .await;
        }
        let mut cmd = redis::cmd("SET");
        cmd.arg(lock_key)
            .arg(token)
            .arg("NX")
            .arg("PX")
            .arg(millis(lease));
        let set: Option<String> = self.store.run("lock_flow", &Request::Cmd(cmd)).await?;
        if set.is_some() {
            return Ok(None);
        }
        Ok(Some(
            self.store
                .get(lock_key, "lock_flow")
                .await?
                .unwrap_or_default(),
        ))
    }

    /// Waits up to `max_wait` for the flow lock: tries it, and while another run holds it,
    /// sleeps until that run releases it (woken by [`FlowLocks::unlock`]) or the store's
    /// `flow_lock_poll` passes, then tries again. Ends with [`LockWait::Busy`] if the lock
    /// never came free.
    #[tracing::instrument(
        name = "idempotency.wait_for_flow_lock",
        skip_all,
        fields(flow = flow_id, max_wait_ms = millis(max_wait), wake_ups)
    )]
    pub async fn wait(
        self,
        flow_id: &str,
        owner: &str,
        lease: Duration,
        max_wait: Duration,
    ) -> Result<LockWait, IdempotencyError> {
        let started = Instant::now();
        let wake_key = self.store.flow_keys(flow_id).lock_wake();
        let poll = self.store.flow_lock_poll();
        let mut wake_ups = 0u32;
        loop {
            if let Some(lock) = self.try_lock(flow_id, owner, lease).await? {
                tracing::Span::current().record("wake_ups", wake_ups);
                return Ok(LockWait::Acquired(lock));
            }
            let waited = started.elapsed();
            if waited >= max_wait {
                let holder = self
                    .store
                    .get(&self.store.flow_keys(flow_id).lock(), "wait_for_flow_lock")
                    .await?;
                debug!(?holder, "flow busy: gave up waiting for its lock");
                return Ok(LockWait::Busy { holder, waited });
            }
            if self
                .wait_for_wake(&wake_key, poll.min(max_wait - waited))
                .await
            {
                wake_ups += 1;
            }
        }
    }

    /// Blocks on the wake list for up to `bound`, on a dedicated connection; `true` when a
    /// release woke us. Errors are not returned: the next try of the lock reports an
    /// unreachable Redis, and a failed wait only costs a short pause.
    async fn wait_for_wake(self, wake_key: &str, bound: Duration) -> bool {
        let conn = match self.store.backend() {
            Backend::Redis(conn) => conn,
            Backend::Embedded(_) => return self.store.lock_wakes().wait(wake_key, bound).await,
        };
        let mut blocking = match conn.blocking().await {
            Ok(blocking) => blocking,
            Err(error) => {
                warn!(%error, "no connection to wait on for the flow lock; polling");
                tokio::time::sleep(bound.min(Duration::from_millis(100))).await;
                return false;
            }
        };
        // BLPOP's timeout is in seconds (decimals since Redis 6); 0 would block forever.
        let seconds = format!("{:.3}", bound.as_secs_f64().max(0.01));
        let mut cmd = redis::cmd("BLPOP");
        cmd.arg(wake_key).arg(&seconds);
        let request = Request::Cmd(cmd);
        let reply = tokio::time::timeout(
            bound + REPLY_GRACE,
            blocking.send::<Option<(String, String)>>(&request),
        )
        .await;
        match reply {
            Ok(Ok(popped)) => {
                blocking.give_back();
                popped.is_some()
            }
            Ok(Err(error)) => {
                warn!(%error, "waiting on the flow lock's wake list failed; polling");
                tokio::time::sleep(bound.min(Duration::from_millis(100))).await;
                false
            }
            Err(_) => {
                warn!("no answer to BLPOP on the flow lock's wake list; polling");
                false
            }
        }
    }

    /// Releases a flow lock if it is still ours, and wakes one run waiting for it; says
    /// whether it was still ours.
    #[tracing::instrument(name = "idempotency.unlock_flow", skip_all, fields(flow = lock.flow_id()))]
    pub async fn unlock(self, lock: FlowLock) -> Result<Unlocked, IdempotencyError> {
        let keys = self.store.flow_keys(lock.flow_id());
        if let Backend::Embedded(_) = self.store.backend() {
            let released = lock.lease().release().await?;
            if !released {
                return Ok(Unlocked::AlreadyLost);
            }
            self.store.lock_wakes().wake(&keys.lock_wake());
            return Ok(Unlocked::Released);
        }
        let mut inv = UNLOCK.prepare_invoke();
        inv.key(lock.lease().key())
            .key(keys.lock_wake())
            .arg(lock.lease().token())
            .arg(millis(WAKE_TTL));
        let released: i64 = self.store.run("unlock_flow", &Request::Script(inv)).await?;
        if released != 1 {
            debug!("nothing to release: the flow lock had expired or was taken over");
            return Ok(Unlocked::AlreadyLost);
        }
        Ok(Unlocked::Released)
    }
}

/// What releasing a flow lock found.
#[must_use = "a lock found lost means another run of the flow may have started while this one ran"]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unlocked {
    /// The lock was still ours and is released; one waiting run was woken.
    Released,
    /// The lock had expired or been taken over before the release (its renewals failed for
    /// longer than its lease): another run of the flow may have overlapped this one.
    AlreadyLost,
}
