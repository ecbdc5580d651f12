//! [`TakenRun`]: a flow-run taken from a queue, to run and then settle as its [`Verdict`]
//! says: a RabbitMQ [`Delivery`] in a fleet, a [`QueuedRun`] of the local run queue on a
//! single node. The consumer loop, the span, the verdict and the settling are written once
//! over this trait (`worker/src/consume.rs`).

use std::fmt::Display;
use std::future::Future;
use std::time::SystemTime;

use crate::broker::{BrokerError, DeadLetterReason, Delivery, Headers, Settled};
use crate::message::{DecodeError, FlowRunMessage};
use crate::run_queue::{QueuedRun, RunQueueError};
use crate::telemetry::LogEvent;

use super::Verdict;

/// A flow-run taken from a queue and not yet settled.
pub trait TakenRun: Send + 'static {
    /// Why settling failed.
    type Error: Display + Send;

    /// The `messaging.system` of the run's span (`rabbitmq`, or `ferry` for the local queue).
    const MESSAGING_SYSTEM: &'static str;

    /// The decoded message, or why it could not be decoded (then dead-letter it).
    fn message(&self) -> Result<&FlowRunMessage, &DecodeError>;
    /// Its headers (the trace context of whoever requested it).
    fn headers(&self) -> &Headers;
    /// When it was requested, or when its retry delay ended (the start of its queue lag).
    fn published_at(&self) -> Option<SystemTime>;
    /// Whether it was handed out before (to a consumer that died): the run may be partly done.
    fn redelivered(&self) -> bool;

    /// Done: removes it from the queue.
    fn ack(self) -> impl Future<Output = Result<Settled, Self::Error>> + Send;
    /// Runs it again after the queue's delay for this attempt; dead-letters it after the
    /// last attempt allowed.
    fn retry_later(self, reason: &str)
    -> impl Future<Output = Result<Settled, Self::Error>> + Send;
    /// It can never succeed: dead-letters it with `kind` and the sentence `reason`.
    fn dead_letter(
        self,
        kind: DeadLetterReason,
        reason: &str,
    ) -> impl Future<Output = Result<Settled, Self::Error>> + Send;
}

/// Settles `run` as `verdict` says, and says how. A failure to settle leaves the run with
/// its queue, which hands it out again: logged, never fatal (`None`).
pub async fn settle<T: TakenRun>(run: T, verdict: Verdict) -> Option<Settled> {
    let result = match &verdict {
        Verdict::Ack => run.ack().await,
        Verdict::RetryLater(reason) => run.retry_later(reason).await,
        Verdict::DeadLetter(kind, reason) => run.dead_letter(*kind, reason).await,
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
            tracing::warn!(%error, ?verdict, "could not settle the flow-run; its queue will hand it out again");
            None
        }
    }
}

impl TakenRun for Delivery {
    type Error = BrokerError;
    const MESSAGING_SYSTEM: &'static str = "rabbitmq";

    fn message(&self) -> Result<&FlowRunMessage, &DecodeError> {
        Delivery::message(self)
    }
    fn headers(&self) -> &Headers {
        Delivery::headers(self)
    }
    fn published_at(&self) -> Option<SystemTime> {
        Delivery::published_at(self)
    }
    fn redelivered(&self) -> bool {
        Delivery::redelivered(self)
    }
    async fn ack(self) -> Result<Settled, BrokerError> {
        Delivery::ack(self).await
    }
    async fn retry_later(self, reason: &str) -> Result<Settled, BrokerError> {
        Delivery::retry_later(self, reason).await
    }
    async fn dead_letter(
        self,
        kind: DeadLetterReason,
        reason: &str,
    ) -> Result<Settled, BrokerError> {
        Delivery::dead_letter(self, kind, reason).await
    }
}

impl TakenRun for QueuedRun {
    type Error = RunQueueError;
    const MESSAGING_SYSTEM: &'static str = "ferry";

    fn message(&self) -> Result<&FlowRunMessage, &DecodeError> {
        QueuedRun::message(self)
    }
    fn headers(&self) -> &Headers {
        QueuedRun::headers(self)
    }
    fn published_at(&self) -> Option<SystemTime> {
        Some(QueuedRun::published_at(self))
    }
    fn redelivered(&self) -> bool {
        QueuedRun::redelivered(self)
    }
    async fn ack(self) -> Result<Settled, RunQueueError> {
        QueuedRun::ack(self).await
    }
    async fn retry_later(self, reason: &str) -> Result<Settled, RunQueueError> {
        QueuedRun::retry_later(self, reason).await
    }
    async fn dead_letter(
        self,
        kind: DeadLetterReason,
        reason: &str,
    ) -> Result<Settled, RunQueueError> {
        QueuedRun::dead_letter(self, kind, reason).await
    }
}
