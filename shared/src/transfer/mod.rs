//! The flow-run engine: everything that happens between "run flow X now" and the report
//! that says what became of each file.
//!
//! It composes the other modules and speaks neither FTP nor Redis itself: [`crate::ftps`]
//! moves bytes, [`crate::idempotency`] remembers what was delivered, [`crate::secrets`]
//! turns references into credentials, and this module decides what to do with each file.
//! [`run_flow`] is the one entry point (the worker's consume loop and `ferry-worker run`
//! both call it).
//!
//! # Flows
//!
//! A flow moves files one way between a local directory and a directory on a partner's
//! FTPS server.
//!
//! - **Upload** (`direction: upload`, `target: {partner, path}`): files in `local.path`
//!   that match one of `files[].pattern` and none of the excludes are sent to the partner.
//!   Patterns are globs on the path relative to `local.path`; `*` does not cross `/`, so
//!   subdirectories are visited only when a pattern says `**` (the upload then creates the
//!   partner's missing folders, see `ftps/mkdir.rs`). With
//!   `delete_after_upload: true` the local file is deleted once its delivery is recorded
//!   (`after_upload: archive`: moved to the archive folder, see `after_transfer.rs`).
//! - **Download** (`direction: download`, `source: {partner, path}`): files in the
//!   partner's directory that match the patterns are fetched into `local.path`. With
//!   `delete_after_download: true` the remote file is deleted once the local copy is
//!   fsynced, renamed into place and recorded (`after_download: move`: renamed into the
//!   partner's processed folder). A file that fails for good may go to an error folder
//!   (`on_failure: move`, see `dead_letter.rs`).
//!
//! **Stability rule.** A file modified less than `min_file_age` ago may still be being
//! written; it is left for a later run and listed under `not_yet_stable` in the report.
//!
//! **Bounded runs.** `order` puts the ready files in order and `max_files_per_run` cuts the
//! list (`limits.rs`): the rest wait for the next run, counted as `left_for_next_run` in
//! the report; the run is still a success, but it does not cover runs requested before it.
//!
//! One run of a flow:
//!
//! 1. takes the **flow lock** in Redis (a lease, renewed while the run lasts), waiting a
//!    bounded time for another run of the same flow to finish (woken by its release), else
//!    "flow busy"; a run requested before a newer run of every file started and settled
//!    everything finishes here, with nothing to do (see `idempotency/coverage.rs`);
//! 2. resolves the partner's secrets and borrows sessions from the partner's **pool**
//!    (at most `max_connections`, default 4; each session serves many files; a session
//!    that saw an error is closed, not reused);
//! 3. selects the files, then handles them in parallel, each through: identify, claim,
//!    transfer, record, tidy up (see [`upload`] and [`download`] for the steps);
//! 4. stops at the run's time limit (`run_timeout`, default 5 minutes): a file not done
//!    by then is reported `failed` with kind `run_timeout` and stays where it was;
//! 5. returns a [`RunReport`]: one row per file (`transferred`, `duplicate`, `failed`,
//!    `left-to-other-worker`, with size, SHA-256, destination and error), totals and a
//!    summary line.
//!
//! Transient partner errors (connection refused or lost, timeouts, 4xx replies) are
//! retried per file with exponential backoff and full jitter (`max_attempts` 3, base 2 s,
//! cap 60 s by default, from `ferry.yaml`'s `retry` or the flow); permanent ones
//! (authentication, certificate, 5xx) are not. A failed file stays in place, no file
//! carries its final name on the other side, and no delivery record is written.
//!
//! # Idempotency modes
//!
//! | `idempotency_mode` | a file is "the same" when...           | cost                  |
//! |--------------------|----------------------------------------|-----------------------|
//! | `hash` (default)   | same flow, name and SHA-256 content    | the file is read twice (hash, then send) |
//! | `content`          | same flow and SHA-256 content, any name | the same             |
//! | `name`             | same flow, name, size and mtime (s)    | no extra read         |
//! | `none`             | never: every run sends every file      | no Redis per file (the flow lock stays) |
//!
//! In `hash` mode a rerun of a delivered file is a duplicate, and a changed content or a new
//! name is new: every file reaches the partner under its own name (empty files and identical
//! "no records today" files included). `content` mode also counts a copy under another name
//! as a duplicate; with `delete_after_upload` such copies are deleted unsent, which is why it
//! is never the default. Downloads claim each remote file by (flow, name, size, mtime)
//! before fetching it and record its content hash too; in `content` mode an identical file
//! that re-appears under another name is recognised after the fetch and its temporary copy
//! discarded. A duplicate's row names the earlier delivery. Records are kept for
//! `redis.delivery_retention`.
//!
//! # Why each file is delivered exactly once
//!
//! - **Two workers, one file.** A transfer starts only after an atomic claim in Redis
//!   (check-record-then-`SET NX` in one script). Whoever holds the claim transfers; the
//!   others report the file `left-to-other-worker`; once delivered, everyone sees the
//!   record and reports a duplicate. The flow lock already keeps two runs of one flow
//!   apart; the claims also cover a run whose lock expired while it stalled.
//! - **The partner never sees a partial file.** Uploads are written under a temporary
//!   name and renamed only after the whole file arrived, its size checked and its SHA-256
//!   (computed in the same pass) found equal to the one claimed. Downloads are written to
//!   a temporary file, fsynced, then renamed.
//! - **A crash anywhere is safe.** Before the commit: nothing under the final name, the
//!   claim expires after its lease (at once when its holder is a dead process of this host),
//!   the next run sends the file again. At the commit, the claim's token is checked and a
//!   commit intent written in one script, then the file renamed, then the delivery recorded
//!   (which removes the intent): a later claim of the file finds the intent and finishes the
//!   commit from what the destination shows instead of sending again (`commit.rs`,
//!   `idempotency/intent.rs`). After the record: the next run sees a duplicate. The source
//!   is deleted only after the record is written, so a crash never loses a file; a remote
//!   file already recorded is fetched again and compared before a download flow deletes it.
//!   `tests/tests/kill_drills.rs` kills a real process at each step
//!   ([`crate::crash_point`]).
//! - **Fail closed.** Without Redis nothing is claimed, so nothing is transferred: the run
//!   fails with a store error (or the file with `store_unavailable`). A claim whose lease
//!   cannot be renewed stops its transfer (`lease_lost`) rather than risk a second sender.

mod after_transfer;
mod audit;
mod commit;
mod context;
mod dead_letter;
mod download;
mod engine;
mod error;
mod hash_cache;
mod limits;
mod local;
mod markers;
mod metrics;
mod mtime;
mod partner;
mod plan;
mod pool;
mod report;
mod retry;
mod selection;
mod sweep;
mod taken_run;
mod upload;
mod verdict;

pub use dead_letter::as_run_attempt;
pub use engine::{Engine, EngineOptions, Progress};
pub use error::{TransferError, TransferErrorKind};
pub use local::hash_file;
pub use partner::partner_session_config;
pub use plan::FlowPlan;
pub use pool::{SessionLease, SessionPool};
pub use report::{
    ClaimHolder, Direction, EarlierDelivery, FileError, FileErrorKind, FileReport, Outcome,
    Recovery, RunInfo, RunReport, Totals,
};
pub use retry::RetryPolicy;
pub use selection::{LocalFile, Selection, Walk, is_stable, select_local};
pub use taken_run::{TakenRun, settle};
pub use verdict::{Verdict, dead_letter_reason, run_requested, verdict};

/// Runs one flow with `engine`: the call the worker's consume loop and `ferry-worker run`
/// make. See [`Engine::run_flow`].
pub async fn run_flow(
    engine: &Engine,
    flow_id: &str,
    only_files: Option<&[String]>,
    run_id: &str,
    progress: Option<Progress<'_>>,
) -> Result<RunReport, TransferError> {
    engine.run_flow(flow_id, only_files, run_id, progress).await
}

/// Writes a finished file's outcome and hash on its span (the span's other fields are set
/// when it is opened).
fn record_on_span(span: &tracing::Span, row: &FileReport) {
    span.record("outcome", row.outcome.as_str());
    span.record("file.bytes", row.size);
    // The semantic conventions' name for the same size.
    span.record("file.size", row.size);
    if let Some(sha256) = &row.sha256 {
        span.record("file.sha256", sha256.as_str());
    }
    if let Some(error) = &row.error {
        span.record("error.type", error.kind.as_str());
        span.in_scope(|| {
            tracing::warn!(error.kind = %error.kind, error.message = %error.message, "file not done");
        });
    }
}
