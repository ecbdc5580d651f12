//! Queuing a run: one committed row, then the consumer is woken. [`RunRequests`] for the
//! queue, so the ticker and the triggers queue runs here on a single node as they publish
//! to RabbitMQ in a fleet.

use crate::broker::Headers;
use crate::message::FlowRunMessage;
use crate::run_requests::{QueueUnavailable, RunRequests};

use super::{RunQueue, RunQueueError, now_ms};

impl RunQueue {
    /// Queues `message` (due now) with `headers` (its trace context); `Ok` once the row is
    /// committed to the file.
    pub async fn enqueue(
        &self,
        message: &FlowRunMessage,
        headers: &Headers,
    ) -> Result<(), RunQueueError> {
        let payload = message.encode()?;
        let headers = serde_json::to_string(headers).unwrap_or_else(|_| "{}".to_owned());
        let flow_run_id = message.flow_run_id.to_string();
        let flow_id = message.flow_id.clone();
        let now = now_ms();
        self.db
            .call("run_queue.enqueue", move |tx| {
                tx.execute(
                    "INSERT INTO run_queue (flow_run_id, flow_id, message, headers, published_at_ms, due_at_ms)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?5)",
                    rusqlite::params![flow_run_id, flow_id, payload, headers, now],
                )
            })
            .await?;
        self.wake.notify_one();
        Ok(())
    }
}

impl RunRequests for RunQueue {
    async fn request(
        &self,
        message: &FlowRunMessage,
        headers: &Headers,
    ) -> Result<(), QueueUnavailable> {
        self.enqueue(message, headers)
            .await
            .map_err(|error| QueueUnavailable(error.to_string()))
    }
}
