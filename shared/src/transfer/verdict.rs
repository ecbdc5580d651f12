//! The verdict on a flow-run: what becomes of its message (or queued run) once the run is
//! over, from the run's outcome. One set of rules for both consumers: `ferry-worker
//! consume` settles a RabbitMQ delivery with it, `ferry-worker standalone` a run of the
//! local run queue.
//!
//! - acked when every file was transferred or skipped;
//! - retried later (the broker's growing delays) when a retry may help: a transient
//!   failure, or files another worker holds (if it dies, its claim expires and the retry
//!   delivers the file; if it finishes, the retry finds a duplicate);
//! - dead-lettered, with a [`DeadLetterReason`] and the reason sentence, when it never can:
//!   unknown or disabled flow, configuration error, files that failed only for reasons a
//!   retry cannot fix. (A malformed message and exhausted retries are the queue's verdict.)

use crate::broker::DeadLetterReason;
use crate::message::FlowRunMessage;
use crate::notify::RunNotice;
use crate::telemetry::metrics::runs::RunMetrics;
use crate::transfer::{Engine, RunReport, TransferError};

/// What to do with a message once its run is over.
#[derive(Debug, PartialEq, Eq)]
#[must_use]
pub enum Verdict {
    /// Done: remove it from the queue.
    Ack,
    /// Run it again later (growing delays; dead-lettered after the last attempt).
    RetryLater(String),
    /// It can never succeed: dead-letter it for this reason, with this sentence.
    DeadLetter(DeadLetterReason, String),
}

/// Runs the flow a message asks for and decides what becomes of the message. Also returns
/// what the run came to for the flow's webhooks ([`RunNotice`]; `None` for an unknown or
/// disabled flow, which is never run): the caller tells them of a dead letter once the
/// queue has settled the run (see `notify/`).
/// `published_at` (the message's publish time) gives the queue lag of a configured flow.
pub async fn run_requested(
    engine: &Engine,
    message: &FlowRunMessage,
    published_at: Option<std::time::SystemTime>,
) -> (Verdict, Option<RunNotice>) {
    let flow = match engine.config().flows.get(&message.flow_id) {
        None => {
            let verdict = Verdict::DeadLetter(
                DeadLetterReason::UnknownFlow,
                format!("unknown flow `{}`", message.flow_id),
            );
            return (verdict, None);
        }
        Some(flow) if !flow.enabled => {
            let verdict = Verdict::DeadLetter(
                DeadLetterReason::FlowDisabled,
                format!("flow `{}` is disabled", message.flow_id),
            );
            return (verdict, None);
        }
        Some(flow) => flow,
    };
    if let Some(published_at) = published_at {
        // A clock behind the publisher's gives a negative lag: counted as none.
        let lag = std::time::SystemTime::now()
            .duration_since(published_at)
            .unwrap_or_default();
        RunMetrics::global().record_queue_lag(&message.flow_id, lag);
    }
    let run_id = message.flow_run_id.to_string();
    // With the request time, a run that a newer complete run of the flow covered while this
    // one was queued finishes at once (see `idempotency/coverage.rs`).
    // The last attempt (no retry follows): failed files may go to the flow's error folder.
    let last_attempt = message.attempt >= crate::startup::topology(engine.config()).max_attempts;
    let run = crate::notify::in_attempt(
        message.attempt,
        engine.run_flow_requested(
            &message.flow_id,
            message.files.as_deref(),
            &run_id,
            Some(message.requested_at),
            None,
        ),
    );
    let outcome = crate::transfer::as_run_attempt(last_attempt, run).await;
    let notice = (!flow.notify.webhooks.is_empty())
        .then(|| RunNotice::from_outcome(flow, &run_id, Some(message.attempt), &outcome));
    (verdict(outcome), notice)
}

/// What a dead letter of a run settled as `verdict` is for: the verdict's own reason, or
/// retries exhausted when the queue dead-lettered a run it was asked to retry. `None` for
/// an acked run.
pub fn dead_letter_reason(verdict: &Verdict) -> Option<(DeadLetterReason, String)> {
    match verdict {
        Verdict::Ack => None,
        Verdict::RetryLater(reason) => Some((DeadLetterReason::RetriesExhausted, reason.clone())),
        Verdict::DeadLetter(kind, reason) => Some((*kind, reason.clone())),
    }
}

/// The rules of [`Verdict`], from the run's outcome.
pub fn verdict(outcome: Result<RunReport, TransferError>) -> Verdict {
    match outcome {
        Ok(report) if report.totals.failed > 0 => {
            let failures: Vec<_> = report
                .files
                .iter()
                .filter(|row| row.outcome == crate::transfer::Outcome::Failed)
                .filter_map(|row| row.error.as_ref().map(|error| (row, error)))
                .collect();
            let retry_may_help = failures.iter().any(|(_, error)| error.transient);
            let first = failures
                .first()
                .map(|(row, error)| {
                    let name = crate::ftps::printable(&row.name);
                    format!("; first: {name} [{}] {}", error.kind, error.message)
                })
                .unwrap_or_default();
            let summary = format!(
                "{} of {} files failed{first}",
                report.totals.failed,
                report.files.len()
            );
            if retry_may_help {
                Verdict::RetryLater(summary)
            } else {
                Verdict::DeadLetter(
                    DeadLetterReason::PermanentFailure,
                    format!("{summary} (no retry can help: fix the cause, then trigger the flow)"),
                )
            }
        }
        Ok(report) if report.totals.left_to_other_workers > 0 => Verdict::RetryLater(format!(
            "{} files held by another worker; checking again later",
            report.totals.left_to_other_workers
        )),
        Ok(_) => Verdict::Ack,
        Err(error) if error.is_transient() => {
            Verdict::RetryLater(format!("[{}] {error}", error.kind().as_str()))
        }
        Err(error) => Verdict::DeadLetter(
            DeadLetterReason::PermanentFailure,
            format!("[{}] {error}", error.kind().as_str()),
        ),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::ftps::FtpsErrorKind;
    use crate::transfer::{Direction, FileError, FileErrorKind, FileReport, Outcome, RunInfo};
    use chrono::Utc;

    use super::*;

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
            run_id: "r".into(),
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
    fn a_run_with_every_file_done_is_acked() {
        let rows = vec![
            row("a", Outcome::Transferred, None),
            row("b", Outcome::Duplicate, None),
        ];
        assert_eq!(verdict(report(rows)), Verdict::Ack);
    }

    #[test]
    fn files_held_elsewhere_or_failing_for_now_come_back_later() {
        let held = vec![row("a", Outcome::LeftToOtherWorker, None)];
        assert!(matches!(verdict(report(held)), Verdict::RetryLater(_)));
        let refused = FileError::retryable(
            FileErrorKind::Partner(FtpsErrorKind::ConnectionRefused),
            "refused",
        );
        let auth = FileError::permanent(
            FileErrorKind::Partner(FtpsErrorKind::AuthenticationFailed),
            "530",
        );
        let mixed = vec![
            row("a", Outcome::Failed, Some(auth)),
            row("b", Outcome::Failed, Some(refused)),
        ];
        assert!(matches!(verdict(report(mixed)), Verdict::RetryLater(_)));
    }

    #[test]
    fn only_permanent_failures_go_to_the_dead_letters_at_once() {
        let auth = FileError::permanent(
            FileErrorKind::Partner(FtpsErrorKind::AuthenticationFailed),
            "530 Login incorrect",
        );
        match verdict(report(vec![row("a", Outcome::Failed, Some(auth))])) {
            Verdict::DeadLetter(DeadLetterReason::PermanentFailure, reason) => {
                assert!(
                    reason.contains("authentication_failed") && reason.contains("530"),
                    "{reason}"
                )
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn runs_that_could_not_run_are_retried_or_dead_lettered_by_kind() {
        let busy = TransferError::FlowBusy {
            flow_id: "f".into(),
            holder: None,
            waited: Duration::from_secs(30),
        };
        assert!(matches!(verdict(Err(busy)), Verdict::RetryLater(_)));
        let unknown = TransferError::UnknownFlow {
            flow_id: "f".into(),
            known: None,
        };
        assert!(matches!(
            verdict(Err(unknown)),
            Verdict::DeadLetter(DeadLetterReason::PermanentFailure, _)
        ));
    }
}
