//! Taking the next due run: the oldest-due row not taken, marked taken in the same
//! transaction, handed out as a [`QueuedRun`] to settle. When none is due, the consumer
//! sleeps until the earliest due time or until a run is queued, whichever comes first.

use std::time::{Duration, SystemTime};

use rusqlite::OptionalExtension;

use crate::broker::Headers;
use crate::message::{DecodeError, FlowRunMessage};

use super::{RunQueue, RunQueueError, from_ms, now_ms};

/// The longest the consumer sleeps without looking at the file again (a safety net: every
/// enqueue of this process wakes it at once).
const POLL: Duration = Duration::from_secs(1);

/// One run taken from the queue, waiting to be settled. Dropped unsettled (a run task
/// that panicked or was aborted), it is released: due again at once.
#[derive(Debug)]
pub struct QueuedRun {
    pub(super) id: i64,
    pub(super) flow_id: String,
    pub(super) flow_run_id: String,
    pub(super) message: Result<FlowRunMessage, DecodeError>,
    pub(super) payload: Vec<u8>,
    pub(super) headers: Headers,
    pub(super) published_at_ms: i64,
    pub(super) redelivered: bool,
    pub(super) queue: RunQueue,
    pub(super) settled: bool,
}

/// One row as read: id, flow, run, message, headers, published at, deliveries before.
type Row = (i64, String, String, Vec<u8>, String, i64, i64);

/// What a look at the queue found.
enum Look {
    Taken(Row),
    /// Nothing due; the earliest due run, if any, is this far away.
    NothingDue(Option<Duration>),
}

impl QueuedRun {
    /// The decoded message, or why it could not be decoded (then dead-letter it).
    pub fn message(&self) -> Result<&FlowRunMessage, &DecodeError> {
        self.message.as_ref()
    }

    /// Its headers (the trace context of whoever queued it, the last retry's reason).
    pub fn headers(&self) -> &Headers {
        &self.headers
    }

    /// Whether it was handed out before, to a run that never settled it (the node died, or
    /// the run task did): the run may be partly done.
    pub fn redelivered(&self) -> bool {
        self.redelivered
    }

    /// When it was queued, or when its retry delay ended (the start of its queue lag).
    pub fn published_at(&self) -> SystemTime {
        from_ms(self.published_at_ms)
    }
}

impl Drop for QueuedRun {
    fn drop(&mut self) {
        if self.settled {
            return;
        }
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            let queue = self.queue.clone();
            let id = self.id;
            handle.spawn(async move {
                if let Err(error) = queue.release(id).await {
                    tracing::warn!(%error, "cannot release an unsettled run; it is due again when the node restarts");
                }
            });
        }
    }
}

impl RunQueue {
    /// Takes the next due run, waiting for one as long as it takes.
    ///
    /// Not cancel-safe once a take has committed: a future dropped then leaves its run
    /// marked taken until [`RunQueue::recover_taken`]. A consumer that may drop it (in a
    /// `select!`) keeps the future and resumes it, as `ferry-worker standalone` does.
    pub async fn next(&self) -> Result<QueuedRun, RunQueueError> {
        loop {
            if let Some(run) = self.try_next().await? {
                return Ok(run);
            }
        }
    }

    /// Takes the next due run if there is one now; otherwise waits until the earliest due
    /// time, a new run or [`POLL`], and returns `None`.
    async fn try_next(&self) -> Result<Option<QueuedRun>, RunQueueError> {
        let now = now_ms();
        let look = self
            .db
            .call("run_queue.take", move |tx| {
                let row: Option<Row> = tx
                    .query_row(
                        "SELECT id, flow_id, flow_run_id, message, headers, published_at_ms, deliveries
                         FROM run_queue WHERE taken = 0 AND due_at_ms <= ?1
                         ORDER BY due_at_ms, id LIMIT 1",
                        [now],
                        |r| {
                            Ok((
                                r.get(0)?,
                                r.get(1)?,
                                r.get(2)?,
                                r.get(3)?,
                                r.get(4)?,
                                r.get(5)?,
                                r.get(6)?,
                            ))
                        },
                    )
                    .optional()?;
                if let Some(row) = row {
                    tx.execute(
                        "UPDATE run_queue SET taken = 1, deliveries = deliveries + 1 WHERE id = ?1",
                        [row.0],
                    )?;
                    return Ok(Look::Taken(row));
                }
                let earliest: Option<i64> = tx.query_row(
                    "SELECT MIN(due_at_ms) FROM run_queue WHERE taken = 0",
                    [],
                    |r| r.get(0),
                )?;
                Ok(Look::NothingDue(earliest.map(|at| {
                    Duration::from_millis(u64::try_from(at - now).unwrap_or(0))
                })))
            })
            .await?;
        match look {
            Look::Taken((id, flow_id, flow_run_id, payload, headers, published_at_ms, before)) => {
                Ok(Some(QueuedRun {
                    id,
                    flow_id,
                    flow_run_id,
                    message: FlowRunMessage::decode(&payload),
                    payload,
                    headers: serde_json::from_str(&headers).unwrap_or_default(),
                    published_at_ms,
                    redelivered: before > 0,
                    queue: self.clone(),
                    settled: false,
                }))
            }
            Look::NothingDue(wait) => {
                let wait = wait.unwrap_or(POLL).min(POLL);
                tokio::select! {
                    _ = self.wake.notified() => {}
                    _ = tokio::time::sleep(wait) => {}
                }
                Ok(None)
            }
        }
    }

    /// Makes the taken run `id` due again at once.
    pub(super) async fn release(&self, id: i64) -> Result<(), RunQueueError> {
        self.db
            .call("run_queue.release", move |tx| {
                tx.execute("UPDATE run_queue SET taken = 0 WHERE id = ?1", [id])
            })
            .await?;
        self.wake.notify_one();
        Ok(())
    }
}
