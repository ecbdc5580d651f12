//! `ferry-worker standalone`: a whole ferry on one machine, in one process, with no
//! RabbitMQ and no Redis.
//!
//! - The store is the embedded one (`store: { kind: embedded, path: ... }` in `ferry.yaml`,
//!   chosen explicitly, never as a fallback): claims, delivery records, flow locks, ticks,
//!   the audit chain and the run queue all live in its SQLite file.
//! - Runs are requested by the same requesters as in a fleet, through the same trait
//!   ([`RunRequests`](ferry_shared::run_requests::RunRequests)), into the node's run queue
//!   ([`RunQueue`]): the tick loop (cron, time zones, catch-up), and the HTTP trigger when
//!   `http_trigger.listen` is set, and the file-arrival watchers (`shared/src/arrival/`) of
//!   upload flows with `trigger.on_arrival`. [`start_requesters`] is where every requester
//!   starts.
//! - They are run by the fleet's consumer loop (`consume.rs`: `worker.concurrency`, the
//!   shared verdict rules, the broker's retry delays and dead letters, SIGTERM drain within
//!   `worker.shutdown_grace`), taking from the queue instead of RabbitMQ.
//! - A run taken by a previous process and never settled (it was killed mid-run) is due
//!   again at start; the delivery records make the second run skip what the first one
//!   delivered, so a file is delivered once.
//! - The ops endpoint (`/healthz`, `/readyz`, `/metrics`) listens on `worker.health_listen`;
//!   metrics, logs, traces and audit records are the fleet's.

use std::net::SocketAddr;
use std::sync::Arc;

use ferry_shared::arrival::ArrivalTrigger;
use ferry_shared::config::Config;
use ferry_shared::http_trigger::HttpTrigger;
use ferry_shared::idempotency::Store;
use ferry_shared::run_queue::RunQueue;
use ferry_shared::schedule::Ticker;
use ferry_shared::secrets::Resolver;
use ferry_shared::startup;
use ferry_shared::telemetry::{LogEvent, Scrape};
use ferry_shared::transfer::Engine;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::source::QueueSource;

/// Why the node cannot start.
#[derive(Debug, thiserror::Error)]
pub enum StandaloneError {
    /// The configuration's store is not the embedded one.
    #[error(
        "`ferry-worker {command}` needs the embedded store: set `store: {{ kind: embedded, path: /var/lib/ferry/state.db }}` in ferry.yaml (a fleet uses `ferry-worker consume` and `ferry-scheduler` with Redis and RabbitMQ)"
    )]
    NotEmbedded {
        /// The subcommand.
        command: &'static str,
    },
}

/// The node until SIGTERM or Ctrl-C.
pub async fn run(
    config: Arc<Config>,
    health_listen: Option<SocketAddr>,
    scrape: Scrape,
    options: ferry_shared::transfer::EngineOptions,
) -> anyhow::Result<()> {
    let readiness = crate::consume::serve_ops(&config, health_listen, scrape).await?;
    let resolver = Resolver::new(config.settings.resolver.clone());
    let (store, queue) = open_queue(&config, &resolver, "standalone").await?;
    let recovered = queue.recover_taken().await?;
    if recovered > 0 {
        tracing::warn!(
            recovered,
            "runs taken by the previous process and never settled are due again"
        );
    }
    let engine = Arc::new(Engine::new(
        config.clone(),
        resolver.clone(),
        store.clone(),
        options,
    ));
    let (stop_tx, stop) = watch::channel(false);
    let mut requesters = start_requesters(&config, &resolver, store, &queue, &stop).await?;
    let stop_on_signal = async move {
        startup::shutdown_signal().await;
        stop_tx.send_replace(true);
    };
    let consumer_stop = stopped(stop.clone());
    let signal = tokio::spawn(stop_on_signal);
    crate::consume::run_from(
        engine,
        QueueSource::new(queue),
        "run_queue".to_owned(),
        readiness,
        consumer_stop,
    )
    .await;
    signal.abort();
    while requesters.join_next().await.is_some() {}
    Ok(())
}

/// Starts every requester of runs over `queue`, each stopping when `stop` turns true: the
/// tick loop, the file-arrival watchers, and the HTTP trigger when `http_trigger.listen`
/// is set.
async fn start_requesters(
    config: &Config,
    resolver: &Resolver,
    store: Store,
    queue: &RunQueue,
    stop: &watch::Receiver<bool>,
) -> anyhow::Result<JoinSet<()>> {
    let mut requesters = JoinSet::new();
    if let Some(listen) = config.settings.http_trigger.listen {
        HttpTrigger::new(config, resolver.clone(), queue.clone())
            .serve(listen)
            .await?;
    }
    // Upload flows with `trigger.on_arrival` (`shared/src/arrival/`): the watchers live
    // until the node stops.
    let arrivals = ArrivalTrigger::new(config, queue.clone());
    tracing::info!(flows = arrivals.flows(), "file-arrival watchers started");
    let arrivals = arrivals.spawn();
    let until_stopped = stopped(stop.clone());
    requesters.spawn(async move {
        until_stopped.await;
        drop(arrivals);
    });
    let ticker = Ticker::new(config, store, queue.clone());
    tracing::info!(
        flows = ticker.scheduled_flows(),
        event = LogEvent::SchedulerStarted.as_str(),
        "scheduler started"
    );
    let catch_up = config.settings.scheduler.catch_up;
    requesters.spawn(ticker.run(catch_up, stopped(stop.clone())));
    Ok(requesters)
}

/// Resolves once `stop` turns true (or its sender is gone).
async fn stopped(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}

/// The embedded store and the run queue in its file; [`StandaloneError::NotEmbedded`] for
/// any other store.
pub async fn open_queue(
    config: &Config,
    resolver: &Resolver,
    command: &'static str,
) -> anyhow::Result<(Store, RunQueue)> {
    // Checked before anything connects: a Redis configuration is refused, never used.
    if config.settings.store.embedded_path().is_none() {
        return Err(StandaloneError::NotEmbedded { command }.into());
    }
    let store = startup::store(config, resolver).await?;
    let db = store
        .embedded()
        .cloned()
        .ok_or(StandaloneError::NotEmbedded { command })?;
    Ok((store, RunQueue::new(db, startup::topology(config))))
}

/// `ferry-worker dead-letters`: every run the node's queue gave up on, as a JSON array
/// (flow, run, attempt, kind, reason, when, the message).
pub async fn print_dead_letters(config: &Config) -> anyhow::Result<()> {
    let resolver = Resolver::new(config.settings.resolver.clone());
    let (_store, queue) = open_queue(config, &resolver, "dead-letters").await?;
    let dead = queue.dead_letters().await?;
    println!("{}", serde_json::to_string_pretty(&dead)?);
    Ok(())
}
