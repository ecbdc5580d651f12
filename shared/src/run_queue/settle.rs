//! Settling a taken run, exactly one way: ack (the row goes), retry later (the next
//! attempt, due after the broker's delay for this attempt; dead-lettered as
//! `retries_exhausted` after `max_attempts`), or dead letter (moved to `run_dead_letters`
//! with its [`DeadLetterReason`] and the operator's sentence). Each is one transaction.

use crate::broker::{DeadLetterReason, RETRY_REASON_HEADER, Settled};
use crate::telemetry::LogEvent;
use crate::telemetry::metrics::runs::RunMetrics;

use super::take::QueuedRun;
use super::{RunQueueError, now_ms};

impl QueuedRun {
    /// Done: removes the run from the queue.
    pub async fn ack(mut self) -> Result<Settled, RunQueueError> {
        self.settled = true;
        let id = self.id;
        let removed = self
            .queue
            .db
            .call("run_queue.ack", move |tx| {
                tx.execute("DELETE FROM run_queue WHERE id = ?1 AND taken = 1", [id])
            })
            .await?;
        self.ensure_was_taken(removed)?;
        Ok(Settled::Acked)
    }

    /// The attempt failed in a way that may pass later: the next attempt is due after the
    /// delay for this one (`broker.retry_delays`). After the last attempt allowed
    /// (`broker.max_attempts`), or for a message that cannot be decoded, dead-letters it.
    pub async fn retry_later(mut self, reason: &str) -> Result<Settled, RunQueueError> {
        let message = match &self.message {
            Ok(message) => message.clone(),
            Err(error) => {
                let reason = format!("{error} (retry asked: {reason})");
                return self.dead_letter(DeadLetterReason::Malformed, &reason).await;
            }
        };
        let Some(delay) = self.queue.topology.retry_delay(message.attempt) else {
            let reason = format!("gave up after {} attempts: {reason}", message.attempt);
            return self
                .dead_letter(DeadLetterReason::RetriesExhausted, &reason)
                .await;
        };
        self.settled = true;
        let next = message.next_attempt();
        let payload = next.encode()?;
        let mut headers = self.headers.clone();
        headers.insert(RETRY_REASON_HEADER.into(), reason.to_owned());
        let headers = serde_json::to_string(&headers).unwrap_or_else(|_| "{}".to_owned());
        let due = now_ms().saturating_add(i64::try_from(delay.as_millis()).unwrap_or(i64::MAX));
        let id = self.id;
        let reason_text = reason.to_owned();
        let updated = self
            .queue
            .db
            .call("run_queue.retry_later", move |tx| {
                tx.execute(
                    "UPDATE run_queue SET taken = 0, message = ?2, headers = ?3,
                         published_at_ms = ?4, due_at_ms = ?4, retry_reason = ?5, deliveries = 0
                     WHERE id = ?1 AND taken = 1",
                    rusqlite::params![id, payload, headers, due, reason_text],
                )
            })
            .await?;
        self.ensure_was_taken(updated)?;
        self.queue.wake.notify_one();
        Ok(Settled::retried(next.attempt, delay, reason))
    }

    /// The run can never succeed: moves it, unchanged, to the dead letters with `kind` and
    /// the operator's sentence `reason`, and counts it in
    /// `ferry_dead_letters_total{reason=kind}`.
    pub async fn dead_letter(
        mut self,
        kind: DeadLetterReason,
        reason: &str,
    ) -> Result<Settled, RunQueueError> {
        self.settled = true;
        let id = self.id;
        let attempt = self.message.as_ref().map(|m| m.attempt).unwrap_or(0);
        let values = (
            self.flow_run_id.clone(),
            self.flow_id.clone(),
            self.payload.clone(),
            serde_json::to_string(&self.headers).unwrap_or_else(|_| "{}".to_owned()),
            kind.as_str(),
            reason.to_owned(),
            now_ms(),
        );
        let moved = self
            .queue
            .db
            .call("run_queue.dead_letter", move |tx| {
                let removed =
                    tx.execute("DELETE FROM run_queue WHERE id = ?1 AND taken = 1", [id])?;
                if removed == 1 {
                    tx.execute(
                        "INSERT INTO run_dead_letters
                         (flow_run_id, flow_id, attempt, message, headers, kind, reason, dead_at_ms)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                        rusqlite::params![
                            values.0, values.1, attempt, values.2, values.3, values.4, values.5,
                            values.6
                        ],
                    )?;
                }
                Ok(removed)
            })
            .await?;
        self.ensure_was_taken(moved)?;
        RunMetrics::global().record_dead_letter(kind.as_str());
        tracing::warn!(
            flow_id = %self.flow_id,
            reason,
            kind = kind.as_str(),
            event = LogEvent::FlowRunDeadLettered.as_str(),
            "flow run dead-lettered"
        );
        Ok(Settled::DeadLettered)
    }

    fn ensure_was_taken(&self, rows: usize) -> Result<(), RunQueueError> {
        if rows == 1 {
            Ok(())
        } else {
            Err(RunQueueError::NotTaken {
                flow_run_id: self.flow_run_id.clone(),
            })
        }
    }
}
