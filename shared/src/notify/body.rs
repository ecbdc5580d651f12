//! The JSON a webhook receives: [`RunNotice`] (what became of one flow-run attempt) under
//! the event's name. One object per notification, version 1:
//!
//! ```json
//! {
//!   "version": 1,
//!   "event": "failure",
//!   "delivery_id": "6f1c...",
//!   "flow_id": "claims-upload", "partner": "insurance-ftps", "direction": "upload",
//!   "run_id": "3f2a...", "attempt": 2,
//!   "outcome": "failed",
//!   "error": null,
//!   "dead_letter": null,
//!   "totals": { "files": 3, "transferred": 2, "duplicates": 0, "failed": 1, "bytes": 2048 },
//!   "files": [ { "name": "a.xml", "outcome": "failed", "error_kind": "target_exists",
//!                "error": "..." } ],
//!   "files_omitted": 0,
//!   "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
//!   "time": "2026-12-04T13:05:51Z"
//! }
//! ```
//!
//! - `outcome`: `ok` (no file failed), `failed` (some file failed) or `not_run` (the run
//!   could not run: `error` says why, with its kind).
//! - `attempt`: the flow-run's attempt (1 first) in a fleet or on a standalone node; `null`
//!   for `ferry-worker run`.
//! - `dead_letter`: for `dead_letter` only, `{reason, message}` (`permanent_failure`,
//!   `retries_exhausted`, ...); the rest describes the last attempt.
//! - `files`: every file of the run, at most [`MAX_FILES`] (`files_omitted` counts the
//!   rest), failed ones first; the duplicate and `not_yet_stable` lists are not repeated.
//! - `delivery_id` is the same for every attempt of one notification (a receiver may
//!   de-duplicate on it); it is also sent as the `X-Ferry-Delivery` header.
//!
//! The messages are the report's, written without secrets.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::config::{Flow, NotifyEvent};
use crate::transfer::{Outcome, RunReport, TransferError};

/// The most file rows one notification carries.
pub const MAX_FILES: usize = 1000;

/// What became of one flow-run attempt, as webhooks are told.
#[derive(Debug, Clone, Serialize)]
pub struct RunNotice {
    /// The flow.
    pub flow_id: String,
    /// The flow's partner.
    pub partner: String,
    /// `upload` or `download`.
    pub direction: &'static str,
    /// The flow-run id.
    pub run_id: String,
    /// The flow-run's attempt (1 first); `None` outside a queue (`ferry-worker run`).
    pub attempt: Option<u32>,
    /// `ok`, `failed` or `not_run`.
    pub outcome: RunOutcome,
    /// Why the run could not run (outcome `not_run`).
    pub error: Option<ErrorNotice>,
    /// The run's counts (absent when it could not run).
    pub totals: Option<TotalsNotice>,
    /// The files, failed first, at most [`MAX_FILES`].
    pub files: Vec<FileNotice>,
    /// Files left out of `files`.
    pub files_omitted: usize,
    /// The run's trace id (32 hex digits), when traced.
    pub trace_id: Option<String>,
    /// When the attempt ended.
    pub time: DateTime<Utc>,
}

/// A run's outcome as a word.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunOutcome {
    /// No file failed.
    Ok,
    /// Some file failed.
    Failed,
    /// The run could not run.
    NotRun,
}

/// An error's kind (a stable word) and its sentence.
#[derive(Debug, Clone, Serialize)]
pub struct ErrorNotice {
    /// The kind (`authentication_failed`, `flow_busy`, ...).
    pub kind: String,
    /// The sentence.
    pub message: String,
}

/// A run's counts.
#[derive(Debug, Clone, Serialize)]
pub struct TotalsNotice {
    /// Files the run took.
    pub files: usize,
    /// Transferred.
    pub transferred: usize,
    /// Skipped as already delivered.
    pub duplicates: usize,
    /// Failed.
    pub failed: usize,
    /// Left to another worker's claim.
    pub left_to_other_workers: usize,
    /// Bytes transferred.
    pub bytes: u64,
}

/// One file's row.
#[derive(Debug, Clone, Serialize)]
pub struct FileNotice {
    /// The name, relative to the flow's folder.
    pub name: String,
    /// `transferred`, `duplicate`, `failed`, ...
    pub outcome: &'static str,
    /// The error's kind, for a file not done.
    pub error_kind: Option<String>,
    /// The error's sentence.
    pub error: Option<String>,
}

impl RunNotice {
    /// The notice of `outcome`, a run of `flow` (its report, or why it could not run).
    /// Takes the trace id of the current span.
    pub fn from_outcome(
        flow: &Flow,
        run_id: &str,
        attempt: Option<u32>,
        outcome: &Result<RunReport, TransferError>,
    ) -> RunNotice {
        let mut notice = RunNotice {
            flow_id: flow.id.clone(),
            partner: flow.remote.partner.clone(),
            direction: match flow.direction {
                crate::config::Direction::Upload => "upload",
                crate::config::Direction::Download => "download",
            },
            run_id: run_id.to_owned(),
            attempt,
            outcome: RunOutcome::NotRun,
            error: None,
            totals: None,
            files: Vec::new(),
            files_omitted: 0,
            trace_id: crate::telemetry::current_trace_id(),
            time: Utc::now(),
        };
        match outcome {
            Ok(report) => {
                notice.outcome = if report.is_success() {
                    RunOutcome::Ok
                } else {
                    RunOutcome::Failed
                };
                notice.totals = Some(TotalsNotice {
                    files: report.files.len(),
                    transferred: report.totals.transferred,
                    duplicates: report.totals.skipped_duplicates,
                    failed: report.totals.failed,
                    left_to_other_workers: report.totals.left_to_other_workers,
                    bytes: report.totals.bytes,
                });
                let mut rows: Vec<_> = report.files.iter().collect();
                // Failed first: a receiver that reads only the head sees what went wrong.
                rows.sort_by_key(|row| row.outcome != Outcome::Failed);
                notice.files_omitted = rows.len().saturating_sub(MAX_FILES);
                notice.files = rows
                    .into_iter()
                    .take(MAX_FILES)
                    .map(|row| FileNotice {
                        name: row.name.clone(),
                        outcome: row.outcome.as_str(),
                        error_kind: row.error.as_ref().map(|e| e.kind.as_str().to_owned()),
                        error: row.error.as_ref().map(|e| e.message.clone()),
                    })
                    .collect();
            }
            Err(error) => {
                notice.error = Some(ErrorNotice {
                    kind: error.kind().as_str().to_owned(),
                    message: error.to_string(),
                });
            }
        }
        notice
    }

    /// The event a finished attempt is: success when no file failed, else failure.
    pub fn finished_event(&self) -> NotifyEvent {
        match self.outcome {
            RunOutcome::Ok => NotifyEvent::Success,
            RunOutcome::Failed | RunOutcome::NotRun => NotifyEvent::Failure,
        }
    }
}

/// Why a run was dead-lettered.
#[derive(Debug, Clone, Serialize)]
pub struct DeadLetterNotice {
    /// The stable word (`permanent_failure`, `retries_exhausted`, ...).
    pub reason: &'static str,
    /// The sentence the dead letter carries.
    pub message: String,
}

/// The whole JSON object of one notification.
#[derive(Debug, Serialize)]
pub(super) struct WebhookBody<'a> {
    pub(super) version: u32,
    pub(super) event: &'static str,
    pub(super) delivery_id: &'a str,
    #[serde(flatten)]
    pub(super) run: &'a RunNotice,
    pub(super) dead_letter: Option<&'a DeadLetterNotice>,
}

/// The body's bytes.
pub(super) fn encode(
    event: NotifyEvent,
    delivery_id: &str,
    run: &RunNotice,
    dead_letter: Option<&DeadLetterNotice>,
) -> Vec<u8> {
    let body = WebhookBody {
        version: 1,
        event: event.as_str(),
        delivery_id,
        run,
        dead_letter,
    };
    // Plain data: serialising cannot fail.
    serde_json::to_vec(&body).unwrap_or_default()
}
