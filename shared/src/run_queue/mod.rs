//! The run queue of a single node: flow-runs waiting to run, in the embedded store's SQLite
//! file, with the broker's retry delays and dead letters.
//!
//! What it promises (the same as the broker gives a fleet):
//! - [`RunQueue::enqueue`] returns once the run is committed to the file (`synchronous =
//!   FULL`): a restart, even after `kill -9`, loses no queued run;
//! - [`RunQueue::next`] hands out the next run that is due (never before its retry delay),
//!   marked taken so that no other consumer of this process takes it too;
//! - a taken run is settled exactly one way ([`QueuedRun::ack`], [`QueuedRun::retry_later`]
//!   with `broker.retry_delays` and `broker.max_attempts`, [`QueuedRun::dead_letter`] with
//!   a [`DeadLetterReason`] and the reason sentence); a run taken but never settled (the
//!   process died mid-run) was never acked: [`RunQueue::recover_taken`], called when the
//!   node starts, makes it due again, and the idempotency store makes the second run skip
//!   what the first one delivered;
//! - dead letters stay in the file ([`RunQueue::dead_letters`]) for an operator to read.
//!
//! One node uses a file's queue at a time (the standalone process); other commands on the
//! same file (`ferry-worker dead-letters`) only read it.
//!
//! Files: `enqueue.rs` (enqueue, [`RunRequests`](crate::run_requests::RunRequests)),
//! `take.rs` (taking the next due run), `settle.rs` (ack, retry, dead letter),
//! `dead_letters.rs` (listing them).

mod dead_letters;
mod enqueue;
mod settle;
mod take;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::Notify;

use crate::broker::Topology;
use crate::idempotency::IdempotencyError;
use crate::idempotency::embedded::EmbeddedDb;
use crate::message::DecodeError;

pub use dead_letters::DeadLetterEntry;
pub use take::QueuedRun;

/// The run queue's tables (an entry of the embedded store's schema).
pub(crate) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS run_queue (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    flow_run_id TEXT NOT NULL,
    flow_id TEXT NOT NULL,
    message BLOB NOT NULL,
    headers TEXT NOT NULL,
    published_at_ms INTEGER NOT NULL,
    due_at_ms INTEGER NOT NULL,
    taken INTEGER NOT NULL DEFAULT 0,
    deliveries INTEGER NOT NULL DEFAULT 0,
    retry_reason TEXT
);
CREATE INDEX IF NOT EXISTS run_queue_due ON run_queue (taken, due_at_ms, id);
CREATE TABLE IF NOT EXISTS run_dead_letters (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    flow_run_id TEXT NOT NULL,
    flow_id TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    message BLOB NOT NULL,
    headers TEXT NOT NULL,
    kind TEXT NOT NULL,
    reason TEXT NOT NULL,
    dead_at_ms INTEGER NOT NULL
);
";

/// What went wrong with the run queue.
#[derive(Debug, thiserror::Error)]
pub enum RunQueueError {
    /// The database file refused the operation.
    #[error(transparent)]
    Store(#[from] IdempotencyError),
    /// The run to enqueue is not a valid flow-run message.
    #[error("refusing to queue an invalid flow-run message: {0}")]
    InvalidMessage(#[from] DecodeError),
    /// The run was settled or released already (by this process, before).
    #[error(
        "flow-run {flow_run_id} is no longer taken: settled already, or the queue was recovered"
    )]
    NotTaken {
        /// The run.
        flow_run_id: String,
    },
}

/// The node's run queue, in the embedded store's file. Cheap to clone.
#[derive(Debug, Clone)]
pub struct RunQueue {
    db: EmbeddedDb,
    topology: Arc<Topology>,
    wake: Arc<Notify>,
}

impl RunQueue {
    /// The queue in `db`, retrying and dead-lettering as `topology` says (its
    /// `retry_delays` and `max_attempts`; `startup::topology` builds it from `ferry.yaml`).
    pub fn new(db: EmbeddedDb, topology: Topology) -> Self {
        RunQueue {
            db,
            topology: Arc::new(topology),
            wake: Arc::new(Notify::new()),
        }
    }

    /// The database file's handle.
    pub fn db(&self) -> &EmbeddedDb {
        &self.db
    }

    /// Makes every run taken and never settled due again (at once): what a node does when
    /// it starts, since no run of a previous process can still be running. Returns how
    /// many runs came back.
    pub async fn recover_taken(&self) -> Result<usize, RunQueueError> {
        let now = now_ms();
        let count = self
            .db
            .call("run_queue.recover_taken", move |tx| {
                tx.execute(
                    "UPDATE run_queue SET taken = 0, due_at_ms = MIN(due_at_ms, ?1) WHERE taken = 1",
                    [now],
                )
            })
            .await?;
        if count > 0 {
            self.wake.notify_one();
        }
        Ok(count)
    }

    /// How many runs wait in the queue (taken ones included).
    pub async fn depth(&self) -> Result<u64, RunQueueError> {
        let count: i64 = self
            .db
            .call("run_queue.depth", |tx| {
                tx.query_row("SELECT COUNT(*) FROM run_queue", [], |row| row.get(0))
            })
            .await?;
        Ok(u64::try_from(count).unwrap_or(0))
    }
}

/// Now, in Unix milliseconds.
pub(crate) fn now_ms() -> i64 {
    to_ms(SystemTime::now())
}

/// `at` in Unix milliseconds.
pub(crate) fn to_ms(at: SystemTime) -> i64 {
    at.duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Unix milliseconds as a time.
pub(crate) fn from_ms(ms: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}
