//! Covered runs: a queued run of a flow that a newer, complete run has made pointless.
//!
//! Flow-runs of one flow queue up behind its flow lock (a burst of triggers, ticks published
//! while the workers were busy, retries). Each of them would select the flow's files again
//! and find only duplicates. But when a run of the same flow **started after this run was
//! requested**, took **every** file (no `files` filter) and **settled every one of them**,
//! it has seen every file this run could have been asked about: this run has nothing left
//! to do and finishes at once, with a report that names the run that covered it.
//!
//! The run that holds the lock records itself when it ends that way
//! ([`FullRuns::record`]): its start (taken when it got the lock, before it selected
//! any file) in `<prefix>:{flow:<flow>}:full-run`, which only ever moves forward (a script
//! keeps the later start). A run that takes the lock then asks [`FullRuns::covering`]
//! before it selects anything. Because the covering run writes its record before it
//! releases the lock, the next holder always sees it.
//!
//! What must never happen is a run skipped while a file it was meant for was not seen by
//! the covering run. Hence the strict rules, checked by the caller (the engine):
//! - only a run without a `files` filter covers; a run with one is covered only by such a
//!   run (never by another filtered run, which saw only its own files);
//! - only a run that settled everything covers: no failed file, none left to another
//!   worker, none "not yet stable" (which a later run may find stable), no time-out, no
//!   lost lock;
//! - the covering run must have started more than [`CLOCK_MARGIN`] after the request: the
//!   request time is the requester's clock, the start the worker's, and a skew between them
//!   must not make an earlier start look later.

use std::sync::LazyLock;
use std::time::Duration;

use chrono::{DateTime, Utc};
use redis::Script;
use serde::{Deserialize, Serialize};
use tracing::debug;

use super::backend::Backend;
use super::connection::{Request, millis};
use super::embedded::full_runs as embedded_full_runs;
use super::error::IdempotencyError;
use super::store::Store;

/// How much later than a run's request a covering run must have started (clock skew
/// between the requester and the workers).
pub const CLOCK_MARGIN: Duration = Duration::from_secs(1);

/// How long the latest full run is remembered: a run queued longer than this simply runs.
pub const FULL_RUN_RETENTION: Duration = Duration::from_secs(24 * 3600);

/// Keep the record with the later start.
///
/// KEYS: full-run. ARGV: start (ms since the epoch), record JSON, retention ms.
/// Reply: 1 written, 0 an equal or later start was already recorded.
static RECORD_FULL_RUN: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local current = redis.call('GET', KEYS[1])
if current then
  local ok, decoded = pcall(cjson.decode, current)
  if ok and type(decoded) == 'table' and tonumber(decoded['started_ms'])
     and tonumber(decoded['started_ms']) >= tonumber(ARGV[1]) then
    return 0
  end
end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return 1
",
    )
});

/// A finished run of a flow that took every file and settled each of them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FullRun {
    /// Its flow-run id.
    pub run_id: String,
    /// When it got the flow lock, before it selected any file (the worker's clock).
    pub started_at: DateTime<Utc>,
    /// When it finished.
    pub finished_at: DateTime<Utc>,
}

/// The stored form: the start in milliseconds too, for the script to compare.
#[derive(Serialize, Deserialize)]
struct Stored {
    #[serde(flatten)]
    run: FullRun,
    started_ms: i64,
}

impl FullRun {
    /// Whether this run covers a run requested at `requested_at`: it started more than
    /// [`CLOCK_MARGIN`] after it.
    pub fn covers(&self, requested_at: DateTime<Utc>) -> bool {
        let margin = chrono::Duration::from_std(CLOCK_MARGIN).unwrap_or_default();
        self.started_at > requested_at + margin
    }
}

/// The record of each flow's latest full run in a store: `store.full_runs()`.
#[derive(Debug, Clone, Copy)]
pub struct FullRuns<'a> {
    store: &'a Store,
}

impl<'a> FullRuns<'a> {
    /// The full-run records kept in `store`.
    pub(super) fn new(store: &'a Store) -> Self {
        FullRuns { store }
    }
}

impl FullRuns<'_> {
    /// Records `run` as the flow's latest full run, unless one that started later is
    /// recorded already. Call it only for a run without a `files` filter that settled
    /// every file, before releasing the flow lock (see the module docs).
    #[tracing::instrument(name = "idempotency.record_full_run", skip_all, fields(flow = flow_id))]
    pub async fn record(self, flow_id: &str, run: &FullRun) -> Result<(), IdempotencyError> {
        let key = self.store.flow_keys(flow_id).full_run();
        let stored = Stored {
            run: run.clone(),
            started_ms: run.started_at.timestamp_millis(),
        };
        let json =
            serde_json::to_string(&stored).map_err(|source| IdempotencyError::Serialization {
                key: key.clone(),
                action: "encoded",
                source,
            })?;
        let written = match self.store.backend() {
            Backend::Embedded(db) => {
                let started_ms = stored.started_ms;
                db.call("record_full_run", move |tx| {
                    embedded_full_runs::record(tx, &key, started_ms, &json, FULL_RUN_RETENTION)
                })
                .await?
            }
            Backend::Redis(_) => {
                let mut inv = RECORD_FULL_RUN.prepare_invoke();
                inv.key(&key)
                    .arg(stored.started_ms)
                    .arg(&json)
                    .arg(millis(FULL_RUN_RETENTION));
                let written: i64 = self
                    .store
                    .run("record_full_run", &Request::Script(inv))
                    .await?;
                written == 1
            }
        };
        debug!(written, "full run recorded");
        Ok(())
    }

    /// The flow's latest full run, if it covers a run requested at `requested_at` (see
    /// [`FullRun::covers`]). Ask while holding the flow lock.
    #[tracing::instrument(name = "idempotency.covering_run", skip_all, fields(flow = flow_id, covered))]
    pub async fn covering(
        self,
        flow_id: &str,
        requested_at: DateTime<Utc>,
    ) -> Result<Option<FullRun>, IdempotencyError> {
        let key = self.store.flow_keys(flow_id).full_run();
        let Some(json) = self.store.get(&key, "covering_run").await? else {
            return Ok(None);
        };
        let stored: Stored =
            serde_json::from_str(&json).map_err(|source| IdempotencyError::Serialization {
                key,
                action: "decoded",
                source,
            })?;
        let covering = Some(stored.run).filter(|run| run.covers(requested_at));
        tracing::Span::current().record("covered", covering.is_some());
        Ok(covering)
    }
}
