//! `ferry-worker consume`: take flow-run messages from RabbitMQ and run them.
//!
//! - At most `worker.concurrency` runs at once; the broker's prefetch is the same number,
//!   so a worker never holds messages it cannot start.
//! - A message is settled only after its run finished: acked when every file was
//!   transferred or skipped; sent to the retry path (growing delays) when a retry may help;
//!   dead-lettered, with the reason in a header, when it never can (malformed message,
//!   unknown or disabled flow, configuration error, files that failed only for reasons a
//!   retry cannot fix, retries exhausted). A worker that dies
//!   mid-run settles nothing, so the broker redelivers the message to another worker, and
//!   the idempotency store makes the second run skip what the first one delivered.
//! - Files that another worker holds (its claim is live) make the message come back later
//!   through the retry path rather than be acked: if that worker dies, its claim expires and
//!   the retry delivers the file; if it finishes, the retry finds a duplicate.
//! - Shutdown (SIGTERM): stop taking messages, hand the buffered ones back, let in-flight
//!   runs finish within `worker.shutdown_grace`, then abandon the rest (their messages go
//!   back to the queue unsettled) and return.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use ferry_shared::broker::{Broker, ConsumerOptions, DeadLetterReason, Delivery, Settled};
use ferry_shared::message::FlowRunMessage;
use ferry_shared::startup;
use ferry_shared::telemetry::metrics::partner::PartnerMetrics;
use ferry_shared::telemetry::metrics::runs::RunMetrics;
use ferry_shared::telemetry::{self, LogEvent};
use ferry_shared::transfer::{Engine, RunReport, TransferError};
use tokio::task::JoinSet;
use tracing::Instrument;

use ferry_shared::ops_http::Readiness;

/// How often readiness is re-evaluated (broker consuming, Redis answering).
const READINESS_CHECK: Duration = Duration::from_secs(2);

/// What to do with a message once its run is over.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    /// Done: remove it from the queue.
    Ack,
    /// Run it again later (growing delays; dead-lettered after the last attempt).
    RetryLater(String),
    /// It can never succeed: dead-letter it for this reason, with this sentence.
    DeadLetter(DeadLetterReason, String),
}

/// Consumes until `shutdown` completes, then drains in-flight runs within the grace period.
pub async fn run(
    engine: Arc<Engine>,
    broker: Broker,
    readiness: Readiness,
    shutdown: impl Future<Output = ()>,
) {
    let settings = engine.config().settings.worker.clone();
    RunMetrics::global()
        .initialize_dead_letters(DeadLetterReason::ALL.iter().map(|reason| reason.as_str()));
    for partner in engine.config().partners.keys() {
        PartnerMetrics::global().initialize(partner);
    }
    let concurrency = usize::from(settings.concurrency.max(1));
    let mut consumer = broker.consumer(ConsumerOptions {
        prefetch: settings.concurrency.max(1),
        connection_name: format!("ferry-worker {}", std::process::id()),
        ..ConsumerOptions::default()
    });
    let redis_ok = Arc::new(AtomicBool::new(true));
    let pinger = tokio::spawn(watch_redis(engine.clone(), redis_ok.clone()));
    let mut readiness_tick = tokio::time::interval(READINESS_CHECK);
    let mut running: JoinSet<()> = JoinSet::new();
    tracing::info!(concurrency, "worker consuming flow-runs");

    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            delivery = consumer.next(), if running.len() < concurrency => match delivery {
                Some(delivery) => {
                    running.spawn(handle(engine.clone(), delivery));
                }
                None => break,
            },
            Some(joined) = running.join_next(), if !running.is_empty() => {
                if let Err(error) = joined {
                    tracing::error!(%error, "a flow-run task panicked; its message goes back to the queue");
                }
            }
            _ = readiness_tick.tick() => {
                readiness.set(consumer.is_consuming() && redis_ok.load(Ordering::Relaxed));
            }
        }
    }

    readiness.set(false);
    tracing::info!(in_flight = running.len(), grace = ?settings.shutdown_grace, "stopping: no new flow-runs");
    consumer.shutdown().await;
    let grace = tokio::time::sleep(settings.shutdown_grace);
    tokio::pin!(grace);
    loop {
        tokio::select! {
            joined = running.join_next() => if joined.is_none() { break },
            _ = &mut grace => {
                tracing::warn!(abandoned = running.len(), "grace period over; unfinished runs go back to the queue");
                running.abort_all();
                while running.join_next().await.is_some() {}
                break;
            }
        }
    }
    pinger.abort();
    engine.close().await;
    tracing::info!(event = LogEvent::WorkerStopped.as_str(), "worker stopped");
}

/// Keeps `ok` up to date with whether Redis answers (for readiness).
async fn watch_redis(engine: Arc<Engine>, ok: Arc<AtomicBool>) {
    let mut tick = tokio::time::interval(READINESS_CHECK);
    loop {
        tick.tick().await;
        ok.store(engine.store().ping().await.is_ok(), Ordering::Relaxed);
    }
}

/// Runs one delivery's flow-run and settles the delivery.
async fn handle(engine: Arc<Engine>, delivery: Delivery) {
    let message = match delivery.message() {
        Ok(message) => message.clone(),
        Err(error) => {
            let reason = format!("undecodable flow-run message: {error}");
            settle(
                delivery,
                Verdict::DeadLetter(DeadLetterReason::Malformed, reason),
            )
            .await;
            return;
        }
    };
    let span = tracing::info_span!(
        "worker.flow_run",
        otel.kind = "consumer",
        messaging.system = "rabbitmq",
        messaging.operation.name = "process",
        messaging.operation.type = "process",
        messaging.destination.name = %startup::topology(engine.config()).work_queue(),
        messaging.message.id = %message.flow_run_id,
        flow_id = %message.flow_id,
        flow_run_id = %message.flow_run_id,
        attempt = message.attempt,
        redelivered = delivery.redelivered(),
    );
    telemetry::set_parent_from(&span, delivery.headers());
    async move {
        let verdict = run_message(&engine, &message, delivery.published_at()).await;
        let settled = settle(delivery, verdict).await;
        if let Some(Settled::Retried { .. }) = settled {
            // Only a configured flow's run comes back through the delay queues.
            RunMetrics::global().record_flow_run_retry(&message.flow_id);
        }
    }
    .instrument(span)
    .await
}

/// Runs the flow a message asks for and decides what becomes of the message.
/// `published_at` (the message's publish time) gives the queue lag of a configured flow.
async fn run_message(
    engine: &Engine,
    message: &FlowRunMessage,
    published_at: Option<std::time::SystemTime>,
) -> Verdict {
    match engine.config().flows.get(&message.flow_id) {
        None => {
            return Verdict::DeadLetter(
                DeadLetterReason::UnknownFlow,
                format!("unknown flow `{}`", message.flow_id),
            );
        }
        Some(flow) if !flow.enabled => {
            return Verdict::DeadLetter(
                DeadLetterReason::FlowDisabled,
                format!("flow `{}` is disabled", message.flow_id),
            );
        }
        Some(_) => {}
    }
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
    let last_attempt = message.attempt >= startup::topology(engine.config()).max_attempts;
    let run = engine.run_flow_requested(
        &message.flow_id,
        message.files.as_deref(),
        &run_id,
        Some(message.requested_at),
        None,
    );
    let outcome = ferry_shared::transfer::as_run_attempt(last_attempt, run).await;
    verdict(outcome)
}

/// The rules of [`Verdict`], from the run's outcome.
fn verdict(outcome: Result<RunReport, TransferError>) -> Verdict {
    match outcome {
        Ok(report) if report.totals.failed > 0 => {
            let failures: Vec<_> = report
                .files
                .iter()
                .filter(|row| row.outcome == ferry_shared::transfer::Outcome::Failed)
                .filter_map(|row| row.error.as_ref().map(|error| (row, error)))
                .collect();
            let retry_may_help = failures.iter().any(|(_, error)| error.transient);
            let first = failures
                .first()
                .map(|(row, error)| {
                    let name = ferry_shared::ftps::printable(&row.name);
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

/// Settles `delivery` as `verdict` says, and says how. A failure to settle leaves the
/// message with the broker, which redelivers it: logged, never fatal (`None`).
async fn settle(delivery: Delivery, verdict: Verdict) -> Option<Settled> {
    let result = match &verdict {
        Verdict::Ack => delivery.ack().await,
        Verdict::RetryLater(reason) => delivery.retry_later(reason).await,
        Verdict::DeadLetter(kind, reason) => delivery.dead_letter(*kind, reason).await,
    };
    match result {
        Ok(settled) => {
            tracing::info!(
                ?settled,
                event = LogEvent::FlowRunSettled.as_str(),
                "flow-run message settled"
            );
            Some(settled)
        }
        Err(error) => {
            tracing::warn!(%error, ?verdict, "could not settle the message; the broker will redeliver it");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use chrono::Utc;
    use ferry_shared::ftps::FtpsErrorKind;
    use ferry_shared::transfer::{
        Direction, FileError, FileErrorKind, FileReport, Outcome, RunInfo,
    };

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
