//! `ferry-worker consume`: take flow-run messages from RabbitMQ and run them. The same loop
//! ([`run_from`], over any [`RunSource`]) runs a standalone node's local run queue
//! (`standalone.rs`), so both settle runs alike.
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
//!   back to the queue unsettled), give webhook notifications under way up to 5 s, and
//!   return.
//! - A dead-lettered run of a flow with `notify:` webhooks is told to them (`dead_letter`)
//!   once settled; `success` / `failure` are sent by the engine at each run's end.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use ferry_shared::broker::{Broker, ConsumerOptions, DeadLetterReason, Settled};
use ferry_shared::telemetry::metrics::partner::PartnerMetrics;
use ferry_shared::telemetry::metrics::runs::RunMetrics;
use ferry_shared::telemetry::{self, LogEvent};
use ferry_shared::transfer::{
    Engine, TakenRun, Verdict, dead_letter_reason, run_requested, settle,
};
use tokio::task::JoinSet;
use tracing::Instrument;

use ferry_shared::ops_http::Readiness;

use crate::source::RunSource;

/// How often readiness is re-evaluated (broker consuming, Redis answering).
const READINESS_CHECK: Duration = Duration::from_secs(2);

/// Starts the worker's ops endpoint (`/healthz`, `/readyz`, `/metrics`) on `health_listen`
/// (else `worker.health_listen`); returns the readiness the consumer loop keeps up to date.
pub async fn serve_ops(
    config: &ferry_shared::config::Config,
    health_listen: Option<std::net::SocketAddr>,
    scrape: ferry_shared::telemetry::Scrape,
) -> anyhow::Result<Readiness> {
    let readiness = Readiness::default();
    let listen = health_listen.unwrap_or(config.settings.worker.health_listen);
    ferry_shared::ops_http::OpsEndpoint {
        scrape,
        readiness: Some(readiness.clone()),
    }
    .serve(listen)
    .await?;
    Ok(readiness)
}

/// Consumes RabbitMQ's work queue until `shutdown` completes, then drains in-flight runs
/// within the grace period.
pub async fn run(
    engine: Arc<Engine>,
    broker: Broker,
    readiness: Readiness,
    shutdown: impl Future<Output = ()>,
) {
    let settings = &engine.config().settings.worker;
    let consumer = broker.consumer(ConsumerOptions {
        prefetch: settings.concurrency.max(1),
        connection_name: format!("ferry-worker {}", std::process::id()),
        ..ConsumerOptions::default()
    });
    let destination = broker.topology().work_queue();
    run_from(engine, consumer, destination, readiness, shutdown).await;
}

/// Runs what `source` hands out (at most `worker.concurrency` at once) until `shutdown`
/// completes, then drains in-flight runs within the grace period. `destination` names the
/// queue in the runs' spans.
pub async fn run_from<S: RunSource>(
    engine: Arc<Engine>,
    mut source: S,
    destination: String,
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
    let redis_ok = Arc::new(AtomicBool::new(true));
    let pinger = tokio::spawn(watch_redis(engine.clone(), redis_ok.clone()));
    let mut readiness_tick = tokio::time::interval(READINESS_CHECK);
    let mut running: JoinSet<()> = JoinSet::new();
    tracing::info!(concurrency, "worker consuming flow-runs");

    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            taken = source.next(), if running.len() < concurrency => match taken {
                Some(taken) => {
                    running.spawn(handle(engine.clone(), taken, destination.clone()));
                }
                None => break,
            },
            Some(joined) = running.join_next(), if !running.is_empty() => {
                if let Err(error) = joined {
                    tracing::error!(%error, "a flow-run task panicked; its message goes back to the queue");
                }
            }
            _ = readiness_tick.tick() => {
                readiness.set(source.is_consuming() && redis_ok.load(Ordering::Relaxed));
            }
        }
    }

    readiness.set(false);
    tracing::info!(in_flight = running.len(), grace = ?settings.shutdown_grace, "stopping: no new flow-runs");
    source.shutdown().await;
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
    // Webhook notifications still under way get a short grace of their own.
    engine
        .notifier()
        .drain(ferry_shared::notify::SHUTDOWN_GRACE)
        .await;
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

/// Runs one taken run's flow-run and settles it.
async fn handle<T: TakenRun>(engine: Arc<Engine>, taken: T, destination: String) {
    let message = match taken.message() {
        Ok(message) => message.clone(),
        Err(error) => {
            let reason = format!("undecodable flow-run message: {error}");
            let _ = settle(
                taken,
                Verdict::DeadLetter(DeadLetterReason::Malformed, reason),
            )
            .await;
            return;
        }
    };
    let span = tracing::info_span!(
        "worker.flow_run",
        otel.kind = "consumer",
        messaging.system = T::MESSAGING_SYSTEM,
        messaging.operation.name = "process",
        messaging.operation.type = "process",
        messaging.destination.name = %destination,
        messaging.message.id = %message.flow_run_id,
        flow_id = %message.flow_id,
        flow_run_id = %message.flow_run_id,
        attempt = message.attempt,
        redelivered = taken.redelivered(),
    );
    telemetry::set_parent_from(&span, taken.headers());
    async move {
        let (verdict, notice) = run_requested(&engine, &message, taken.published_at()).await;
        let dead_letter = dead_letter_reason(&verdict);
        let settled = settle(taken, verdict).await;
        if let Some(Settled::Retried { .. }) = settled {
            // Only a configured flow's run comes back through the delay queues.
            RunMetrics::global().record_flow_run_retry(&message.flow_id);
        }
        // The flow's webhooks hear of a dead letter once the queue holds it (returns at once).
        if let (Some(Settled::DeadLettered), Some(notice), Some((reason, sentence))) =
            (settled, notice, dead_letter)
            && let Some(flow) = engine.config().flows.get(&message.flow_id)
        {
            engine
                .notifier()
                .dead_lettered(flow, &notice, reason, &sentence);
        }
    }
    .instrument(span)
    .await
}
