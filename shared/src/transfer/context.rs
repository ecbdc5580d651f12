//! [`RunContext`]: what the per-file steps of one flow-run share (the plan, the store, the
//! partner's session pool, the deadline), the retry loop every partner operation runs in,
//! and [`RunStop`]: why a run takes no new file any more.
//!
//! Failing closed: a file is sent only under a claim Redis confirmed. When Redis stops
//! answering mid-run (a restart, a failover, a network cut), the file that met it fails
//! with `store_unavailable`, and the run starts no further file, even if Redis answers
//! again a moment later: a Redis that restarted may have lost the last second of claims
//! and records (AOF `everysec`), and a run that carried on would be racing whatever else
//! noticed the outage. Files under way finish under their own claims (renewed, or stopped
//! at half a lease without renewal); the rest stay where they are for the next run.

use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use tokio::time::Instant;
use tracing::warn;

use super::plan::FlowPlan;
use super::pool::SessionPool;
use super::report::{FileError, FileErrorKind, FileReport};
use crate::ftps::FtpsError;
use crate::idempotency::{Claim, DeliveryRecord, IdempotencyError, Store};
use crate::telemetry::metrics::file_labels;
use crate::telemetry::metrics::runs::RunMetrics;

/// The shared state of one flow-run.
pub(crate) struct RunContext<'a> {
    /// The flow, in engine terms.
    pub plan: &'a FlowPlan,
    /// Claims, records and locks.
    pub store: &'a Store,
    /// Sessions to the flow's partner.
    pub pool: &'a SessionPool,
    /// This worker's id, the owner of the claims it takes.
    pub owner: &'a str,
    /// This run's id, written in every delivery record.
    pub run_id: &'a str,
    /// The run's trace id, written in delivery records when tracing exports one.
    pub trace_id: Option<String>,
    /// How long a claim lasts without renewal.
    pub claim_lease: Duration,
    /// When the run must stop.
    pub deadline: Instant,
    /// Set once the run lost its flow lock or its store: no new file may start.
    pub stop: &'a RunStop,
    /// The audit trail every file event is written to.
    pub audit: &'a crate::audit::AuditLog,
    /// The engine's cache of local files' hashes (uploads that keep their files).
    pub hashes: &'a super::hash_cache::HashCache,
}

/// Why a run takes no new file (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum StopReason {
    /// The flow lock could not be renewed (Redis unreachable, or the lock taken over).
    LockLost = 1,
    /// A claim, renewal or record found Redis unavailable, or a file's claim was lost.
    StoreLost = 2,
}

/// Set once, read before every file: the first reason a run stopped taking files.
#[derive(Debug, Default)]
pub(crate) struct RunStop(AtomicU8);

impl RunStop {
    /// Stops the run for `reason` (the first reason given is kept).
    pub fn stop(&self, reason: StopReason) {
        let _ = self
            .0
            .compare_exchange(0, reason as u8, Ordering::SeqCst, Ordering::SeqCst);
    }

    /// Why the run stopped, if it did.
    pub fn reason(&self) -> Option<StopReason> {
        match self.0.load(Ordering::SeqCst) {
            1 => Some(StopReason::LockLost),
            2 => Some(StopReason::StoreLost),
            _ => None,
        }
    }

    /// Stops the run when `row` says the store was unavailable for its file, or its claim
    /// was lost (a renewal that found Redis unreachable for half a lease, or a claim taken
    /// over while this worker stalled: either way no new file should start under it).
    pub fn after(&self, row: &FileReport) {
        if row.error.as_ref().is_some_and(|e| {
            matches!(
                e.kind,
                FileErrorKind::StoreUnavailable | FileErrorKind::LeaseLost
            )
        }) {
            self.stop(StopReason::StoreLost);
        }
    }
}

impl RunContext<'_> {
    /// Why a file is not started: the run lost its flow lock or its store (see the module
    /// docs), or ran out of time; `None` when it may start.
    pub fn stopped(&self) -> Option<FileError> {
        let why = match self.stop.reason() {
            Some(StopReason::LockLost) => {
                "the run lost its flow lock (Redis unreachable or the lock taken over)"
            }
            Some(StopReason::StoreLost) => {
                "Redis stopped answering during the run, so no claim can be trusted"
            }
            None => return self.out_of_time().then(|| self.timed_out()),
        };
        Some(FileError::retryable(
            FileErrorKind::StoreUnavailable,
            format!(
                "not started: {why}; the run takes no new file, and the file stays where it \
                 was for the next run"
            ),
        ))
    }

    /// Whether the run's time limit has passed.
    pub fn out_of_time(&self) -> bool {
        Instant::now() >= self.deadline
    }

    /// Why a file was not done when the run's time limit came.
    pub fn timed_out(&self) -> FileError {
        FileError::retryable(
            FileErrorKind::RunTimeout,
            format!(
                "the run reached its time limit ({:?}) before this file was done; it stays \
                 where it was for the next run",
                self.plan.run_timeout
            ),
        )
    }

    /// Runs one file's transfer under its claim (renewing the lease meanwhile) and within
    /// the run's time limit. Without a claim (`idempotency_mode: none`) only the time limit
    /// applies. A transfer cut short leaves its session to be discarded.
    pub async fn under_claim<T>(
        &self,
        claim: Option<&Claim>,
        work: impl Future<Output = Result<T, FtpsError>>,
    ) -> Result<T, FileError> {
        let bounded = tokio::time::timeout_at(self.deadline, work);
        let outcome = match claim {
            Some(claim) => claim.hold_while(bounded).await.map_err(store_failure)?,
            None => bounded.await,
        };
        match outcome {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(err)) => Err(partner_failure(&err)),
            Err(_elapsed) => Err(self.timed_out()),
        }
    }

    /// Gives a claim back after a failed transfer, so the next run can take the file at
    /// once. A failure here only delays that until the lease expires: logged, not fatal.
    pub async fn release(&self, claim: Option<Claim>) {
        if let Some(claim) = claim
            && let Err(err) = self.store.release(claim).await
        {
            warn!(error = %err, "could not release the claim; it expires with its lease");
        }
    }

    /// Runs `attempt` (one try of a partner operation, see [`SessionLease::keep_if_ok`])
    /// under the plan's retry policy and within the run's time limit (`retry.rs`).
    /// `attempts` counts every try; each retry counts in `ferry_file_retries_total`.
    ///
    /// [`SessionLease::keep_if_ok`]: super::pool::SessionLease::keep_if_ok
    pub async fn with_retries<T, F, Fut>(
        &self,
        attempts: &mut u32,
        attempt: F,
    ) -> Result<T, FtpsError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, FtpsError>>,
    {
        let labels = file_labels(
            &self.plan.flow_id,
            &self.plan.partner_id,
            self.plan.direction.as_str(),
        );
        let count = |err: &FtpsError| {
            RunMetrics::global().record_file_retry(&labels, err.kind().as_str());
        };
        self.plan
            .retry
            .run(self.deadline, attempts, attempt, count)
            .await
    }

    /// Why a delivered file is not reported `transferred`: its claim was lost during the
    /// transfer, so another worker may have sent it too. The source is kept (`kept` says
    /// which), so nothing is lost either way.
    pub fn claim_lost(&self, delivered_to: &str, kept: &str) -> FileError {
        FileError::retryable(
            FileErrorKind::LeaseLost,
            format!(
                "delivered to {delivered_to}, but this worker's claim on the file expired during \
                 the transfer: another worker may have delivered it too (a duplicate at the \
                 destination is possible); {kept}"
            ),
        )
    }

    /// Why a complete file was not renamed into place: its claim was found lost right
    /// before the rename, so the file now belongs to whichever worker holds it.
    pub fn claim_lost_before_rename(&self, kept: &str) -> FileError {
        FileError::retryable(
            FileErrorKind::LeaseLost,
            format!(
                "this worker's claim on the file expired before it was renamed into place: \
                 nothing was given the final name (another worker may deliver it); {kept}"
            ),
        )
    }

    /// A delivery record for this run.
    pub fn record(
        &self,
        file_name: &str,
        size: u64,
        sha256: &str,
        delivered_to: &str,
    ) -> DeliveryRecord {
        DeliveryRecord {
            file_name: file_name.to_owned(),
            size,
            sha256: sha256.to_owned(),
            remote_path: delivered_to.to_owned(),
            delivered_at: chrono::Utc::now(),
            flow_run_id: self.run_id.to_owned(),
            trace_id: self.trace_id.clone(),
            direction: self.plan.direction.as_str().to_owned(),
        }
    }
}

/// A partner error as a report row's error.
pub(crate) fn partner_failure(err: &FtpsError) -> FileError {
    if err.is_transient() {
        FileError::retryable(FileErrorKind::Partner(err.kind()), err.to_string())
    } else {
        FileError::permanent(FileErrorKind::Partner(err.kind()), err.to_string())
    }
}

/// A store error as a report row's error: `lease_lost` or `store_unavailable`.
pub(crate) fn store_failure(err: IdempotencyError) -> FileError {
    let kind = match err.kind() {
        crate::idempotency::ErrorKind::LeaseLost => FileErrorKind::LeaseLost,
        _ => FileErrorKind::StoreUnavailable,
    };
    FileError::retryable(kind, err.to_string())
}
