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
    /// The kind of the run's error: the word metrics and logs use for a run that could not
    /// run (`configuration`, `secret`, `store-unavailable`, `flow-busy`, `partner`,
    /// `local-io`); a file's `error_kind` is the file error's own word (`target_exists`).
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

    /// The event a finished attempt is: success when no file failed and none was left to
    /// another worker, failure when a file failed or the run could not run; none for a run
    /// that left files to other workers (it is retried: its next attempt, or its dead
    /// letter, tells how it ended).
    pub fn finished_event(&self) -> Option<NotifyEvent> {
        match self.outcome {
            RunOutcome::Ok
                if self
                    .totals
                    .as_ref()
                    .is_some_and(|totals| totals.left_to_other_workers > 0) =>
            {
                None
            }
            RunOutcome::Ok => Some(NotifyEvent::Success),
            RunOutcome::Failed | RunOutcome::NotRun => Some(NotifyEvent::Failure),
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config::Config;
    use crate::ftps::FtpsErrorKind;
    use crate::transfer::{Direction, FileError, FileErrorKind, FileReport, RunInfo};

    /// Flow `f` (an upload to partner `p`) of a configuration written to a scratch folder.
    fn flow() -> Flow {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("partners")).unwrap();
        std::fs::create_dir(dir.path().join("flows")).unwrap();
        std::fs::write(
            dir.path().join("partners/p.yaml"),
            "id: p\nprotocol: ftps\nftps:\n  connection:\n    host: h\n    passive: true\n  \
             auth:\n    username: u\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("flows/f.yaml"),
            "flows:\n  f:\n    direction: upload\n    target: {partner: p, path: /in}\n    \
             local: {path: ./out}\n    files: [{pattern: \"*.xml\"}]\n",
        )
        .unwrap();
        let config = Config::load_with_env(dir.path(), &|_| None).unwrap();
        config.flows["f"].clone()
    }

    fn row(name: &str, outcome: Outcome, error: Option<FileError>) -> FileReport {
        FileReport {
            name: name.to_owned(),
            size: 1,
            sha256: None,
            outcome,
            remote_path: None,
            local_path: None,
            earlier: None,
            holder: None,
            attempts: 1,
            recovery: None,
            verified: None,
            error,
            idempotency_key: None,
            source_deleted: false,
            source_moved_to: None,
        }
    }

    fn report(rows: Vec<FileReport>) -> Result<RunReport, TransferError> {
        let run = RunInfo {
            flow_id: "f".into(),
            run_id: "r1".into(),
            direction: Direction::Upload,
            started_at: Utc::now(),
        };
        Ok(RunReport::new(
            run,
            Duration::from_secs(1),
            rows,
            Vec::new(),
            false,
        ))
    }

    #[test]
    fn a_run_with_a_failed_file_is_a_failure_with_that_file_first() {
        let exists = FileError::permanent(
            FileErrorKind::Partner(FtpsErrorKind::TargetExists),
            "b.xml exists",
        );
        let outcome = report(vec![
            row("a.xml", Outcome::Transferred, None),
            row("b.xml", Outcome::Failed, Some(exists)),
            row("c.xml", Outcome::Duplicate, None),
        ]);
        let notice = RunNotice::from_outcome(&flow(), "r1", Some(2), &outcome);

        assert_eq!(notice.finished_event(), Some(NotifyEvent::Failure));
        let body: serde_json::Value =
            serde_json::from_slice(&encode(NotifyEvent::Failure, "d1", &notice, None)).unwrap();
        assert_eq!(body["version"], 1);
        assert_eq!(body["event"], "failure");
        assert_eq!(body["delivery_id"], "d1");
        assert_eq!(body["flow_id"], "f");
        assert_eq!(body["partner"], "p");
        assert_eq!(body["direction"], "upload");
        assert_eq!(body["run_id"], "r1");
        assert_eq!(body["attempt"], 2);
        assert_eq!(body["outcome"], "failed");
        assert_eq!(body["dead_letter"], serde_json::Value::Null);
        assert_eq!(body["totals"]["failed"], 1);
        assert_eq!(body["totals"]["transferred"], 1);
        assert_eq!(body["totals"]["duplicates"], 1);
        assert_eq!(body["files"][0]["name"], "b.xml");
        assert_eq!(body["files"][0]["error_kind"], "target_exists");
        assert_eq!(body["files"][0]["error"], "b.xml exists");
        assert_eq!(body["files"][1]["name"], "a.xml");
        assert_eq!(body["files"][1]["error_kind"], serde_json::Value::Null);
    }

    #[test]
    fn a_run_that_could_not_run_names_the_error_and_a_dead_letter_its_reason() {
        let busy = Err(TransferError::FlowBusy {
            flow_id: "f".into(),
            holder: None,
            waited: Duration::from_secs(30),
        });
        let notice = RunNotice::from_outcome(&flow(), "r1", None, &busy);
        assert_eq!(notice.finished_event(), Some(NotifyEvent::Failure));
        let dead = DeadLetterNotice {
            reason: "retries_exhausted",
            message: "gave up".into(),
        };
        let body: serde_json::Value =
            serde_json::from_slice(&encode(NotifyEvent::DeadLetter, "d2", &notice, Some(&dead)))
                .unwrap();
        assert_eq!(body["event"], "dead_letter");
        assert_eq!(body["outcome"], "not_run");
        assert_eq!(body["error"]["kind"], "flow-busy");
        assert_eq!(body["totals"], serde_json::Value::Null);
        assert_eq!(body["dead_letter"]["reason"], "retries_exhausted");
        assert_eq!(body["attempt"], serde_json::Value::Null);
    }

    #[test]
    fn a_run_that_left_files_to_another_worker_sends_no_success() {
        let rows = vec![
            row("a.xml", Outcome::Transferred, None),
            row("b.xml", Outcome::LeftToOtherWorker, None),
        ];
        let notice = RunNotice::from_outcome(&flow(), "r1", Some(1), &report(rows));
        assert_eq!(notice.finished_event(), None);
    }

    #[test]
    fn a_success_lists_at_most_max_files() {
        let rows = (0..=MAX_FILES)
            .map(|i| row(&format!("f{i:05}.xml"), Outcome::Transferred, None))
            .collect();
        let notice = RunNotice::from_outcome(&flow(), "r1", Some(1), &report(rows));
        assert_eq!(notice.finished_event(), Some(NotifyEvent::Success));
        assert_eq!(notice.files.len(), MAX_FILES);
        assert_eq!(notice.files_omitted, 1);
    }
}
