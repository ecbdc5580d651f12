//! Reading the dead letters: every run the queue gave up on, oldest first, with its reason
//! (`ferry-worker dead-letters` prints them as JSON).

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::broker::DeadLetterReason;

use super::{RunQueue, RunQueueError, from_ms};

/// One dead-lettered run.
#[derive(Debug, Clone, Serialize)]
pub struct DeadLetterEntry {
    /// The run.
    pub flow_run_id: String,
    /// Its flow.
    pub flow_id: String,
    /// The attempt that was dead-lettered (0 for a message that could not be decoded).
    pub attempt: u32,
    /// Why, as a closed set (`retries_exhausted`, `permanent_failure`, ...).
    #[serde(serialize_with = "reason_word")]
    pub kind: DeadLetterReason,
    /// The operator's sentence: which file, which error.
    pub reason: String,
    /// When it was dead-lettered.
    pub dead_at: DateTime<Utc>,
    /// The flow-run message as it was queued (JSON), or its text when it is not JSON.
    pub message: serde_json::Value,
}

fn reason_word<S: serde::Serializer>(kind: &DeadLetterReason, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(kind.as_str())
}

/// One row as read: run, flow, attempt, message, kind, reason, when (Unix ms).
type DeadRow = (String, String, u32, Vec<u8>, String, String, i64);

impl RunQueue {
    /// Every dead letter in the file, oldest first. A row whose kind this build does not
    /// know (written by a newer ferry) is listed as `permanent_failure`.
    pub async fn dead_letters(&self) -> Result<Vec<DeadLetterEntry>, RunQueueError> {
        let rows: Vec<DeadRow> = self
            .db
            .call("run_queue.dead_letters", |tx| {
                let mut statement = tx.prepare(
                    "SELECT flow_run_id, flow_id, attempt, message, kind, reason, dead_at_ms
                     FROM run_dead_letters ORDER BY id",
                )?;
                let rows = statement.query_map([], |r| {
                    Ok((
                        r.get(0)?,
                        r.get(1)?,
                        r.get(2)?,
                        r.get(3)?,
                        r.get(4)?,
                        r.get(5)?,
                        r.get(6)?,
                    ))
                })?;
                rows.collect()
            })
            .await?;
        Ok(rows
            .into_iter()
            .map(
                |(flow_run_id, flow_id, attempt, message, kind, reason, dead_at_ms)| {
                    DeadLetterEntry {
                        flow_run_id,
                        flow_id,
                        attempt,
                        kind: DeadLetterReason::from_word(&kind)
                            .unwrap_or(DeadLetterReason::PermanentFailure),
                        reason,
                        dead_at: DateTime::<Utc>::from(from_ms(dead_at_ms)),
                        message: serde_json::from_slice(&message).unwrap_or_else(|_| {
                            serde_json::Value::String(String::from_utf8_lossy(&message).into())
                        }),
                    }
                },
            )
            .collect())
    }
}
