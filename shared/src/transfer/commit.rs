//! The commit of one delivered file, shared by both directions: write the intent under the
//! claim, (the caller renames), record the delivery. The reasoning, and what a later worker
//! does with an intent it finds, is in `idempotency/intent.rs`; the per-direction halves
//! (where the temporary file is, how it is renamed and looked at) are in `upload.rs` and
//! `download.rs`.

use tracing::warn;

use super::context::{RunContext, store_failure};
use super::report::{FileError, Recovery};
use crate::idempotency::{Claim, CommitIntent, CommitStart, DeliveryKey, DeliveryRecord, Recorded};

/// What a run found where an earlier attempt's intent pointed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Located {
    /// The temporary file is still there, complete: the rename never happened.
    Staged,
    /// The final name holds the intent's content: the rename happened.
    InPlace,
    /// Neither: the file was never put in place, or was taken away since.
    Neither,
}

impl Located {
    /// How a resumed file's row describes what was done with it.
    pub(crate) fn recovery(self) -> Recovery {
        match self {
            Located::Staged => Recovery::RenamedLeftover,
            Located::InPlace => Recovery::FoundInPlace,
            Located::Neither => Recovery::SentAgain,
        }
    }
}

/// The intent for a file staged at `temp_path`, to be renamed to `final_path`.
pub(crate) fn intent(
    ctx: &RunContext<'_>,
    temp_path: String,
    final_path: String,
    size: u64,
    sha256: &[u8; 32],
) -> CommitIntent {
    CommitIntent {
        temp_path,
        final_path,
        size,
        sha256: hex::encode(sha256),
        flow_run_id: ctx.run_id.to_owned(),
        written_at: chrono::Utc::now(),
    }
}

/// Writes `intent` under `claim` if the claim is still ours: the last check before the
/// rename. `Err` means "do not rename": the claim was lost (`lease_lost`; `kept` says
/// what stays where it was) or the store did not answer.
pub(crate) async fn begin(
    ctx: &RunContext<'_>,
    claim: &Claim,
    intent: &CommitIntent,
    kept: &str,
) -> Result<(), FileError> {
    match ctx
        .store
        .begin_commit(claim, intent, ctx.plan.retention)
        .await
    {
        Ok(CommitStart::ClaimHeld) => Ok(()),
        Ok(CommitStart::ClaimLost) => Err(ctx.claim_lost_before_rename(kept)),
        Err(err) => Err(store_failure(err)),
    }
}

/// Gives the intent up after a refused rename. Returns whether the temporary file may now
/// be removed: only when the intent is gone (else a later worker may still finish it).
pub(crate) async fn abandon(ctx: &RunContext<'_>, claim: &Claim) -> bool {
    match ctx.store.abandon_commit(claim).await {
        Ok(held) => held,
        Err(err) => {
            warn!(error = %err, "could not give the commit intent up; the temporary file stays for the next attempt");
            false
        }
    }
}

/// Records the delivery of `claim`'s file (and under `also`), which removes the intent and
/// releases the claim. `delivered_to` and `kept` word the error of a lost claim.
pub(crate) async fn record(
    ctx: &RunContext<'_>,
    claim: &Claim,
    also: &[DeliveryKey],
    record: &DeliveryRecord,
    kept: &str,
) -> Result<(), FileError> {
    let recorded = ctx
        .store
        .record_delivery_also(claim, also, record, ctx.plan.retention)
        .await;
    match recorded {
        Ok(Recorded::ClaimHeld) => Ok(()),
        Ok(Recorded::ClaimLost) => Err(ctx.claim_lost(&record.remote_path, kept)),
        Err(err) => {
            let mut error = store_failure(err);
            error.message = format!(
                "delivered to {} but the delivery record could not be written ({}); {kept}, \
                 and the next run finishes the delivery from its commit intent",
                record.remote_path, error.message
            );
            Err(error)
        }
    }
}
