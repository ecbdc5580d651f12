//! [`AuditLog`]: what the engine writes file events through.
//!
//! **Each event is first a span event** on the file's span (target `ferry::audit`, with the
//! outcome, file, size, hash, idempotency key and error kind as fields, never a secret), so
//! a trace shows it whether or not Redis takes the record.
//!
//! **When Redis refuses the append** (unreachable after the connection's own retries, or the
//! HMAC key cannot be resolved), the file's outcome is already decided and stays so: the
//! transfer is neither undone nor repeated for the trail's sake. The event is kept, in order,
//! in this process's queue (not yet chained: its place in the chain is taken when it is
//! written) and written before a later event (events of the next 5 s are only queued, so an
//! unresponsive Redis does not hold every file for its timeouts) and again when the run
//! ends; each time the queue is not empty afterwards a warning says how many records wait
//! (`audit.pending`). A retry rebuilds the same record on the same head, so an attempt that
//! reached Redis late is recognised and never written twice.
//! The queue holds at most [`MAX_PENDING`] events; past that the oldest are dropped with an
//! error log (`audit.dropped`). A worker that exits with records queued loses them: the
//! delivery records (`idempotency`) and the run's report still say what happened, and
//! `audit verify` stays green because nothing half-written ever enters the chain.
//!
//! **One writer per process.** Appends of one process go one at a time (a mutex), each
//! starting from the head the previous one left, so a worker's own files never race each
//! other for the same place; workers of the fleet race in Redis, and the append script
//! (`store.rs`) lets exactly one win each place.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use tokio::sync::{Mutex, OnceCell};
use tracing::{Span, error, warn};

use super::chain::{ChainKey, record_hash};
use super::error::AuditError;
use super::record::{AuditEvent, AuditRecord};
use super::store::{Appended, AuditStore, Head, Retention};
use crate::config::AuditSettings;
use crate::idempotency::Store;
use crate::secrets::Resolver;

/// Events kept while Redis refuses them, at most.
pub const MAX_PENDING: usize = 10_000;

/// How long after a failed write new events are only queued.
const QUIET_AFTER_FAILURE: std::time::Duration = std::time::Duration::from_secs(5);

/// How many of the trail's last records are searched for a write that failed but may
/// have reached Redis late.
const RECENT: usize = 1_000;

/// How many times one record is rebuilt on a head that moved before giving up for now.
const MAX_RACES: u32 = 1_000;

/// The engine's handle on the audit trail; cheap to clone. Disabled (`audit.enabled:
/// false`), it only emits the span events.
#[derive(Clone, Debug)]
pub struct AuditLog {
    inner: Option<Arc<Inner>>,
}

struct Inner {
    store: AuditStore,
    retention: Retention,
    key_ref: Option<crate::secrets::SecretRef>,
    resolver: Resolver,
    key: OnceCell<ChainKey>,
    writer: Mutex<Writer>,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog")
            .field("store", &self.store)
            .field("retention", &self.retention)
            .field("keyed", &self.key_ref.is_some())
            .finish_non_exhaustive()
    }
}

/// Events not yet written, and the last head this process saw of each flow.
#[derive(Default)]
struct Writer {
    pending: VecDeque<AuditEvent>,
    heads: HashMap<String, Head>,
    /// The last write failed: the first pending event may have reached Redis anyway.
    uncertain: bool,
    /// After a failure, events are only queued until then (a Redis that does not answer
    /// must not hold every file of a run for its timeouts); the end of a run always tries.
    quiet_until: Option<tokio::time::Instant>,
}

impl AuditLog {
    /// The trail of `store`'s Redis, as `settings` say; the HMAC key (if any) is resolved
    /// with `resolver` at the first record.
    pub fn new(settings: &AuditSettings, store: &Store, resolver: Resolver) -> Self {
        if !settings.enabled {
            return AuditLog { inner: None };
        }
        AuditLog {
            inner: Some(Arc::new(Inner {
                store: AuditStore::new(store),
                retention: Retention {
                    max_records: settings.max_records,
                    max_age: settings.max_age,
                },
                key_ref: settings.hmac_key.clone(),
                resolver,
                key: OnceCell::new(),
                writer: Mutex::new(Writer::default()),
            })),
        }
    }

    /// A log that writes nothing (span events only).
    pub fn disabled() -> Self {
        AuditLog { inner: None }
    }

    /// Emits `event` on `span` and appends it to its flow's trail (see the module docs for
    /// what happens when Redis refuses).
    pub async fn record(&self, span: &Span, event: AuditEvent) {
        span.in_scope(|| {
            tracing::event!(
                target: "ferry::audit",
                tracing::Level::INFO,
                audit.outcome = event.outcome.as_str(),
                file.name = %crate::ftps::printable(&event.file),
                file.size = event.size,
                file.sha256 = event.sha256.as_deref().unwrap_or(""),
                idempotency.key = event.idempotency_key.as_deref().unwrap_or(""),
                error.type = event.error_kind.as_deref().unwrap_or(""),
                "audit event"
            );
        });
        let Some(inner) = &self.inner else {
            return;
        };
        let mut writer = inner.writer.lock().await;
        if writer.pending.len() >= MAX_PENDING {
            writer.pending.pop_front();
            error!(
                audit.dropped = 1,
                "the audit queue is full: its oldest record was dropped"
            );
        }
        writer.pending.push_back(event);
        if writer
            .quiet_until
            .is_some_and(|until| tokio::time::Instant::now() < until)
        {
            return;
        }
        if let Err(err) = inner.flush(&mut writer).await {
            span.in_scope(|| {
                warn!(
                    audit.pending = writer.pending.len(),
                    error = %err,
                    "audit record not written yet; kept and retried with the next one"
                );
            });
        }
    }

    /// Writes what is queued (at the end of a run); the number of records still waiting.
    pub async fn flush(&self) -> usize {
        let Some(inner) = &self.inner else {
            return 0;
        };
        let mut writer = inner.writer.lock().await;
        if writer.pending.is_empty() {
            return 0;
        }
        if let Err(err) = inner.flush(&mut writer).await {
            warn!(
                audit.pending = writer.pending.len(),
                error = %err,
                "audit records not written at the end of the run; kept and retried with the next record"
            );
        }
        writer.pending.len()
    }
}

impl Inner {
    /// Writes the queue in order, stopping at the first failure.
    async fn flush(&self, writer: &mut Writer) -> Result<(), AuditError> {
        while let Some(event) = writer.pending.front().cloned() {
            let flow = event.flow.clone();
            let head = match writer.heads.get(&flow) {
                Some(head) => head.clone(),
                None => self.store.head(&flow).await?,
            };
            // After a failure the same head is kept, so the retry rebuilds the very same
            // record (same seq, link and bytes) and recognises it if the failed attempt
            // reached Redis after all.
            let uncertain = writer.uncertain;
            match self.write(event, head, uncertain).await {
                Ok(head) => {
                    writer.heads.insert(flow, head);
                    writer.pending.pop_front();
                    writer.uncertain = false;
                    writer.quiet_until = None;
                }
                Err(err) => {
                    writer.uncertain = true;
                    writer.quiet_until = Some(tokio::time::Instant::now() + QUIET_AFTER_FAILURE);
                    return Err(err);
                }
            }
        }
        Ok(())
    }

    /// Chains `event` on `head` and appends it, building it again on the new head as long
    /// as another writer got there first; the new head. When an earlier attempt failed
    /// (`uncertain`), a moved head may be that attempt's record, executed late: the trail's
    /// last records are looked at before the record is built again, so it is never written
    /// twice.
    async fn write(
        &self,
        event: AuditEvent,
        mut head: Head,
        uncertain: bool,
    ) -> Result<Head, AuditError> {
        let key = self.key().await?;
        for _ in 0..MAX_RACES {
            let seq = head.seq + 1;
            let record = AuditRecord::new(event.clone(), seq, head.hash.clone());
            let bytes = record.encode();
            let hash = record_hash(&bytes);
            let mac = key.map(|k| k.mac(&bytes));
            let appended = self
                .store
                .append(
                    &event.flow,
                    &head,
                    seq,
                    &bytes,
                    &hash,
                    mac.as_deref(),
                    self.retention,
                )
                .await?;
            match appended {
                Appended::Written(_) => return Ok(Head { seq, hash }),
                // Our own append whose reply was lost, then retried by the connection.
                Appended::HeadMoved(moved) if moved.hash == hash => return Ok(moved),
                Appended::HeadMoved(moved) => {
                    if uncertain
                        && self
                            .store
                            .recent_hashes(&event.flow, RECENT)
                            .await?
                            .contains(&hash)
                    {
                        // Written by the failed attempt; the head is past it already.
                        return Ok(moved);
                    }
                    head = moved;
                }
            }
        }
        Err(AuditError::Protocol {
            flow: event.flow,
            reason: format!("the head moved {MAX_RACES} times in a row; trying again later"),
        })
    }

    /// The HMAC key, resolved once (a failure is retried at the next record).
    async fn key(&self) -> Result<Option<&ChainKey>, AuditError> {
        let Some(reference) = &self.key_ref else {
            return Ok(None);
        };
        let key = self
            .key
            .get_or_try_init(|| async {
                self.resolver
                    .resolve(reference)
                    .await
                    .map(ChainKey::new)
                    .map_err(|source| AuditError::Key {
                        source: Box::new(source),
                    })
            })
            .await?;
        Ok(Some(key))
    }
}
