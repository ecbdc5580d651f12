//! `ferry-worker consume`: take flow-run messages from RabbitMQ and run them.
//!
//! - At most `worker.concurrency` runs at once; the broker's prefetch is the same number,
//!   so a worker never holds messages it cannot start.
//! - A message is settled only after its run finished, as the shared verdict rules say
//!   (`shared/src/transfer/verdict.rs`): acked when every file was transferred or skipped;
//!   sent to the retry path (growing delays) when a retry may help; dead-lettered, with the
//!   reason in a header, when it never can (malformed message, unknown or disabled flow,
//!   configuration error, files that failed only for reasons a retry cannot fix, retries
//!   exhausted). A worker that dies
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
use ferry_shared::startup;
use ferry_shared::telemetry::metrics::partner::PartnerMetrics;
use ferry_shared::telemetry::metrics::runs::RunMetrics;
use ferry_shared::telemetry::{self, LogEvent};
use ferry_shared::transfer::{Engine, Verdict, run_requested};
use tokio::task::JoinSet;
use tracing::Instrument;

use ferry_shared::ops_http::Readiness;

/// How often readiness is re-evaluated (broker consuming, Redis answering).
const READINESS_CHECK: Duration = Duration::from_secs(2);

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
        let verdict = run_requested(&engine, &message, delivery.published_at()).await;
        let settled = settle(delivery, verdict).await;
        if let Some(Settled::Retried { .. }) = settled {
            // Only a configured flow's run comes back through the delay queues.
            RunMetrics::global().record_flow_run_retry(&message.flow_id);
        }
    }
    .instrument(span)
    .await
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
