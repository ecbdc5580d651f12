//! [`CommitIntent`]: what a transfer writes down, under its still-held claim, right before
//! it gives a complete file its final name, so that a crash between that rename and the
//! delivery record can be finished by the next worker instead of sending the file again.
//!
//! The commit of one file is three steps, each safe to crash after:
//!
//! ```text
//! 1. store.begin_commit(claim, intent)   one script: the claim is still ours (else
//!                                        CommitStart::ClaimLost: no rename, nothing
//!                                        under the final name), then SET intent
//! 2. rename temporary -> final           on the partner (uploads) or locally (downloads)
//! 3. store.record_delivery(claim, ...)   one script: the claim is still ours, SET record,
//!                                        DEL intent, DEL claim
//! ```
//!
//! A worker that later claims the same key finds the intent
//! ([`ClaimOutcome::Unfinished`](super::ClaimOutcome::Unfinished)) and looks at the
//! destination before sending anything:
//!
//! - the temporary file is still there with the intent's size: step 2 never happened;
//!   rename it now, then record (nothing is sent again);
//! - the temporary file is gone and the final name has the intent's size: step 2 happened;
//!   record without sending;
//! - neither: the file was never put in place, or someone (the partner's own processing)
//!   took it away since; it is sent again, and its row says that a copy may already have
//!   reached the partner.
//!
//! An upload that cannot rename (refused, target exists) gives its intent up
//! ([`Store::abandon_commit`](super::Store::abandon_commit)) *before* it removes the
//! temporary file, so an intent never points at a partner-side temporary file that ferry
//! itself deleted. (A download's part is local and its source is still on the partner: a
//! part lost with its intent left only means fetching again.) A download finished from a
//! crashed attempt's part does not delete the remote file in that run: the next run fetches
//! it again and compares it with the record before it deletes it.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// A delivery about to be renamed into place; stored as JSON under the `intent:` key for
/// the delivery record's retention, and removed when the delivery is recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitIntent {
    /// Where the complete, checked content is now (the partner's temporary name for
    /// uploads, the local part file for downloads).
    pub temp_path: String,
    /// The name it is being given.
    pub final_path: String,
    /// Its size in bytes.
    pub size: u64,
    /// SHA-256 of its content, lowercase hex.
    pub sha256: String,
    /// The flow-run that wrote the intent.
    pub flow_run_id: String,
    /// When the intent was written.
    pub written_at: DateTime<Utc>,
}

impl CommitIntent {
    /// [`CommitIntent::sha256`] as bytes (all zeros if it is not 64 hex digits: never the
    /// case for an intent ferry wrote).
    pub fn sha256_bytes(&self) -> [u8; 32] {
        let mut digest = [0u8; 32];
        let _ = hex::decode_to_slice(&self.sha256, &mut digest);
        digest
    }
}

/// What [`Store::begin_commit`](super::Store::begin_commit) found of the claim.
#[must_use = "a lost claim means the file must not be renamed into place"]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommitStart {
    /// The claim is still ours and the intent is written: rename, then record.
    ClaimHeld,
    /// The claim expired or was taken over: do not rename; another worker owns the file.
    ClaimLost,
}
