//! Leases: a [`Claim`] on one file and a [`FlowLock`] on a whole flow.
//!
//! Both are a key (in Redis or the embedded store's rows) holding a unique owner token with
//! an expiry. Only the holder of
//! the token may renew or delete it (compare-and-set scripts in the store), so a worker
//! that stalled past its lease can never delete the claim a newer worker has taken. The
//! lease is the safety net for crashed workers; [`Claim::hold_while`] keeps it alive for
//! as long as the work actually runs.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;
use tracing::{debug, warn};

use super::backend::Backend;
use super::error::IdempotencyError;
use super::keys::DeliveryKey;

/// A key held with a unique token: the part claims and locks share.
pub(crate) struct Lease {
    backend: Backend,
    key: String,
    token: String,
}

impl Lease {
    pub(crate) fn new(backend: Backend, key: String, token: String) -> Self {
        Lease {
            backend,
            key,
            token,
        }
    }

    pub(crate) fn key(&self) -> &str {
        &self.key
    }

    pub(crate) fn token(&self) -> &str {
        &self.token
    }

    pub(crate) async fn renew(&self, lease: Duration) -> Result<bool, IdempotencyError> {
        self.backend
            .renew_if_owner(&self.key, &self.token, lease)
            .await
    }

    pub(crate) async fn release(&self) -> Result<bool, IdempotencyError> {
        let released = self.backend.delete_if_owner(&self.key, &self.token).await?;
        if !released {
            debug!(key = %self.key, "nothing to release: the lease had expired or was taken over");
        }
        Ok(released)
    }

    /// Renews the lease every `lease / 3` until it is lost, and says why: the key no
    /// longer holds our token, or no renewal succeeded for half a lease. Half, not a whole
    /// one: when Redis has been unreachable that long the key may expire before we could
    /// tell, and work must stop while the lease is still surely ours. Each renewal is
    /// bounded to a quarter of the lease (the store's own retries could take longer).
    pub(crate) async fn keep_alive(&self, lease: Duration) -> String {
        let every = (lease / 3).max(Duration::from_millis(10));
        let bound = (lease / 4).max(Duration::from_millis(10));
        let give_up = lease / 2;
        let retry = (every / 4).max(Duration::from_millis(10));
        let mut last_renewed = Instant::now();
        let mut next = last_renewed + every;
        loop {
            tokio::time::sleep_until(next).await;
            let renewed = tokio::time::timeout(bound, self.renew(lease)).await;
            let failure = match renewed {
                Ok(Ok(true)) => {
                    last_renewed = Instant::now();
                    next = last_renewed + every;
                    continue;
                }
                Ok(Ok(false)) => {
                    return "the key no longer holds this owner's token (expired or taken over)"
                        .to_owned();
                }
                Ok(Err(e)) => e.to_string(),
                Err(_) => format!("timed out after {bound:?}"),
            };
            if last_renewed.elapsed() >= give_up {
                return format!("no renewal succeeded for half a lease ({failure})");
            }
            warn!(key = %self.key, error = %failure, "lease renewal failed; will retry");
            next = (Instant::now() + retry).min(last_renewed + give_up);
        }
    }

    /// Runs `work` while the lease is kept alive ([`Lease::keep_alive`]). Ends with
    /// [`IdempotencyError::LeaseLost`] (dropping `work`) as soon as the lease is lost.
    async fn hold_while<F: Future>(
        &self,
        lease: Duration,
        work: F,
    ) -> Result<F::Output, IdempotencyError> {
        let started = Instant::now();
        tokio::select! {
            biased;
            out = work => Ok(out),
            reason = self.keep_alive(lease) => {
                warn!(key = %self.key, %reason, "lease lost while work was running; stopping it");
                Err(IdempotencyError::LeaseLost {
                    key: self.key.clone(),
                    held: started.elapsed(),
                    reason,
                })
            }
        }
    }
}

/// The right, for the lease, to transfer one file. Obtained from
/// [`Store::claim`](super::Store::claim); ends with
/// [`Store::record_delivery`](super::Store::record_delivery) or
/// [`Store::release`](super::Store::release). If it is simply dropped (crash, cancelled
/// run), the key expires after the lease and another worker may take the file.
#[must_use = "a claim must be recorded or released, or it blocks the file until the lease expires"]
pub struct Claim {
    lease: Lease,
    key: DeliveryKey,
    duration: Duration,
}

impl Claim {
    pub(crate) fn new(lease: Lease, key: DeliveryKey, duration: Duration) -> Self {
        Claim {
            lease,
            key,
            duration,
        }
    }

    pub(crate) fn lease(&self) -> &Lease {
        &self.lease
    }

    /// The delivery key this claim is for.
    pub fn key(&self) -> &DeliveryKey {
        &self.key
    }

    /// How long the claim lasts without renewal.
    pub(crate) fn duration(&self) -> Duration {
        self.duration
    }

    /// This claim's owner token (`<owner>/<uuid>`), as another worker would see it.
    pub fn owner(&self) -> &str {
        self.lease.token()
    }

    /// Extends the claim by `lease` from now, if it is still ours. `false` means it was
    /// lost (expired and possibly claimed by another worker): stop working on the file.
    pub async fn renew(&self, lease: Duration) -> Result<bool, IdempotencyError> {
        self.lease.renew(lease).await
    }

    /// Runs `work` (the transfer) while renewing the claim every third of its lease.
    ///
    /// Returns the work's output, or [`IdempotencyError::LeaseLost`] once the claim is lost,
    /// in which case `work` is dropped mid-way (treat the file as failed, do not record
    /// it, and discard any session the work was using).
    pub async fn hold_while<F: Future>(&self, work: F) -> Result<F::Output, IdempotencyError> {
        self.lease.hold_while(self.duration, work).await
    }
}

impl std::fmt::Debug for Claim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Claim")
            .field("key", &self.key)
            .field("owner", &self.lease.token)
            .field("lease", &self.duration)
            .finish()
    }
}

/// The exclusive right, for the lease, to run one flow. Obtained from
/// [`FlowLocks::try_lock`](super::FlowLocks::try_lock) or
/// [`FlowLocks::wait`](super::FlowLocks::wait); given back with
/// [`FlowLocks::unlock`](super::FlowLocks::unlock).
#[must_use = "a flow lock must be released, or the flow stays locked until the lease expires"]
pub struct FlowLock {
    lease: Lease,
    flow_id: String,
    duration: Duration,
}

impl FlowLock {
    pub(crate) fn new(lease: Lease, flow_id: String, duration: Duration) -> Self {
        FlowLock {
            lease,
            flow_id,
            duration,
        }
    }

    pub(crate) fn lease(&self) -> &Lease {
        &self.lease
    }

    /// The locked flow.
    pub fn flow_id(&self) -> &str {
        &self.flow_id
    }

    /// This lock's owner token (`<owner>/<uuid>`).
    pub fn owner(&self) -> &str {
        self.lease.token()
    }

    /// Extends the lock by `lease` from now if it is still ours; `false` if it was lost.
    pub async fn renew(&self, lease: Duration) -> Result<bool, IdempotencyError> {
        self.lease.renew(lease).await
    }

    /// Runs `work` while renewing the lock every third of its lease; like
    /// [`Claim::hold_while`].
    pub async fn hold_while<F: Future>(&self, work: F) -> Result<F::Output, IdempotencyError> {
        self.lease.hold_while(self.duration, work).await
    }

    /// Keeps the lock alive until it is lost, then says why; unlike
    /// [`FlowLock::hold_while`] it stops nothing, so the caller can let work under way
    /// finish (each file has its own claim) and take no new work.
    pub async fn keep_alive(&self) -> String {
        self.lease.keep_alive(self.duration).await
    }
}

impl std::fmt::Debug for FlowLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlowLock")
            .field("flow_id", &self.flow_id)
            .field("owner", &self.lease.token)
            .field("lease", &self.duration)
            .finish()
    }
}
