//! [`RunRequests`]: where a requested flow-run goes, whoever requested it.
//!
//! Runs are requested by the cron ticker, the HTTP trigger, the file-arrival trigger and
//! `ferry-scheduler trigger`. In a fleet they go to RabbitMQ (the [`Publisher`] publishes
//! with confirms); on a single node they go to the local, persisted run queue. The
//! requesters only see this trait, so each of them runs the same way in both modes.

use std::future::Future;

use crate::broker::{Headers, Publisher};
use crate::message::FlowRunMessage;

/// Where a requested run goes: the broker in a fleet, the local run queue on a single node.
pub trait RunRequests: Send + Sync + 'static {
    /// Queues `message`, with `headers` (the trace context); `Ok` once it is durably queued.
    fn request(
        &self,
        message: &FlowRunMessage,
        headers: &Headers,
    ) -> impl Future<Output = Result<(), QueueUnavailable>> + Send;
}

/// The run could not be queued now (the HTTP trigger answers `503`, with the reason).
#[derive(Debug, Clone, thiserror::Error)]
#[error("the run could not be queued: {0}")]
pub struct QueueUnavailable(pub String);

impl RunRequests for Publisher {
    async fn request(
        &self,
        message: &FlowRunMessage,
        headers: &Headers,
    ) -> Result<(), QueueUnavailable> {
        self.publish(message, headers)
            .await
            .map_err(|error| QueueUnavailable(error.to_string()))
    }
}
