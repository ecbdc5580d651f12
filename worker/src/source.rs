//! [`RunSource`]: where the consumer loop (`consume.rs`) takes its flow-runs from:
//! RabbitMQ's work queue in a fleet ([`Consumer`]), the node's run queue in standalone mode
//! ([`QueueSource`]).

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use ferry_shared::backoff::Backoff;
use ferry_shared::broker::{Consumer, Delivery};
use ferry_shared::run_queue::{QueuedRun, RunQueue};
use ferry_shared::telemetry::LogEvent;
use ferry_shared::transfer::TakenRun;

/// A stream of flow-runs to run and settle.
pub trait RunSource: Send {
    /// One run taken from it.
    type Run: TakenRun;
    /// The next run; `None` when the source ended for good.
    fn next(&mut self) -> impl Future<Output = Option<Self::Run>> + Send;
    /// Whether it hands out runs now (for readiness).
    fn is_consuming(&self) -> bool;
    /// Stops taking runs and hands back what was taken and not started.
    fn shutdown(self) -> impl Future<Output = ()> + Send;
}

impl RunSource for Consumer {
    type Run = Delivery;

    async fn next(&mut self) -> Option<Delivery> {
        Consumer::next(self).await
    }
    fn is_consuming(&self) -> bool {
        Consumer::is_consuming(self)
    }
    async fn shutdown(self) {
        Consumer::shutdown(self).await;
    }
}

/// The node's run queue as a [`RunSource`]: a failing read of the file is logged and tried
/// again with backoff, never the end of the source.
///
/// Cancel-safe, as the consumer loop needs (its `select!` drops `next()` whenever another
/// branch wins): a take in flight is kept in `pending` and resumed by the next call, so a
/// run marked taken in the file is always handed out, never stranded until a restart.
pub struct QueueSource {
    queue: RunQueue,
    healthy: Arc<AtomicBool>,
    pending: Option<Pin<Box<dyn Future<Output = QueuedRun> + Send>>>,
}

impl QueueSource {
    /// Consumes `queue`.
    pub fn new(queue: RunQueue) -> Self {
        tracing::info!(
            file = %queue.db().path().display(),
            event = LogEvent::Consuming.as_str(),
            "consuming the run queue"
        );
        QueueSource {
            queue,
            healthy: Arc::new(AtomicBool::new(true)),
            pending: None,
        }
    }
}

/// Takes the next due run, retrying a failing file with backoff.
async fn take(queue: RunQueue, healthy: Arc<AtomicBool>) -> QueuedRun {
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(10));
    loop {
        match queue.next().await {
            Ok(run) => {
                healthy.store(true, Ordering::Relaxed);
                return run;
            }
            Err(error) => {
                healthy.store(false, Ordering::Relaxed);
                let delay = backoff.next_delay();
                tracing::warn!(%error, ?delay, "cannot take from the run queue; trying again");
                tokio::time::sleep(delay).await;
            }
        }
    }
}

impl RunSource for QueueSource {
    type Run = QueuedRun;

    async fn next(&mut self) -> Option<QueuedRun> {
        let (queue, healthy) = (&self.queue, &self.healthy);
        let pending = self
            .pending
            .get_or_insert_with(|| Box::pin(take(queue.clone(), healthy.clone())));
        let run = pending.as_mut().await;
        self.pending = None;
        Some(run)
    }
    fn is_consuming(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }
    async fn shutdown(self) {}
}
