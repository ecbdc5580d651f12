//! [`RunSource`]: where the consumer loop (`consume.rs`) takes its flow-runs from:
//! RabbitMQ's work queue in a fleet ([`Consumer`]), the node's run queue in standalone mode
//! ([`QueueSource`]).

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
pub struct QueueSource {
    queue: RunQueue,
    healthy: bool,
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
            healthy: true,
        }
    }
}

impl RunSource for QueueSource {
    type Run = QueuedRun;

    async fn next(&mut self) -> Option<QueuedRun> {
        let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(10));
        loop {
            match self.queue.next().await {
                Ok(run) => {
                    self.healthy = true;
                    return Some(run);
                }
                Err(error) => {
                    self.healthy = false;
                    let delay = backoff.next_delay();
                    tracing::warn!(%error, ?delay, "cannot take from the run queue; trying again");
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }
    fn is_consuming(&self) -> bool {
        self.healthy
    }
    async fn shutdown(self) {}
}
