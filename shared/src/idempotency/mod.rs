//! The store behind ferry's exactly-once delivery: Redis for a fleet, or one embedded SQLite
//! file for a single node (`store.kind` in `ferry.yaml`; `embedded/`), with the same
//! semantics behind one [`Store`]. Only this module speaks Redis or SQL.
//!
//! Workers are stateless and a flow-run message may be delivered twice (broker redelivery,
//! a replayed trigger, two replicas of the scheduler), so "has this file already gone to
//! the partner?" and "is another worker sending it right now?" are answered here, in
//! Redis, shared by every worker. For each file of a flow-run the transfer engine does:
//!
//! ```text
//! store.claim(key, worker, lease)
//!   AlreadyDelivered(record) -> skip (the record says when and by which run)
//!   ClaimedByOther { owner, expires_in } -> leave it to that worker
//!   Unfinished { claim, intent } -> a crashed commit: look at the destination first
//!   Claimed(claim)           -> claim.hold_while(transfer)   (renews every lease/3; stops
//!                                                             after lease/2 without renewal)
//!                                 ok  -> store.begin_commit(&claim, &intent)  (token checked)
//!                                          -> CommitStart::ClaimHeld: rename, then
//!                                             store.record_delivery(&claim, &record, retention)
//!                                             -> Recorded::ClaimHeld | Recorded::ClaimLost
//!                                          -> CommitStart::ClaimLost: no rename
//!                                 err -> store.release(claim)
//! ```
//!
//! The commit protocol and what a later worker does with an intent are in [`intent`]'s
//! module docs; when a claim's holder is known dead (`liveness.rs`), the claim is taken over.
//!
//! The engine fails closed: an [`ErrorKind::Unavailable`] error means "no answer", and no
//! file is transferred without one.
//!
//! # Key layout
//!
//! Every key starts with the configured prefix (default `ferry`) and the flow's Redis
//! Cluster hash tag, so all keys of one flow live in one slot and the store's scripts may
//! touch several of them at once. The layout is built in [`keys`] and nowhere else.
//!
//! | key                                          | value                       | expiry                     | written by |
//! |----------------------------------------------|-----------------------------|----------------------------|------------|
//! | `<prefix>:{flow:<flow>}:claim:<key>`         | owner token `<owner>/<uuid>`| lease (`PX`), renewed      | [`Store::claim`], [`Claim::renew`]; deleted by [`Store::record_delivery`], [`Store::release`] |
//! | `<prefix>:{flow:<flow>}:delivered:<key>`     | [`DeliveryRecord`] as JSON  | retention (`PX`)           | [`Store::record_delivery`] |
//! | `<prefix>:{flow:<flow>}:intent:<key>`        | [`CommitIntent`] as JSON    | retention (`PX`)           | [`Store::begin_commit`]; deleted by [`Store::record_delivery`], [`Store::abandon_commit`] |
//! | `<prefix>:{flow:<flow>}:lock`                | owner token                 | lease (`PX`), renewed      | [`FlowLocks::try_lock`]; deleted by [`FlowLocks::unlock`] |
//! | `<prefix>:{flow:<flow>}:lock-wake`           | list of at most one token   | 30 s ([`WAKE_TTL`])        | [`FlowLocks::unlock`]; popped (`BLPOP`) by [`FlowLocks::wait`] |
//! | `<prefix>:{flow:<flow>}:full-run`            | [`FullRun`] as JSON          | 24 h                       | [`FullRuns::record`]; read by [`FullRuns::covering`] |
//! | `<prefix>:{flow:<flow>}:tick:<unix-seconds>` | JSON `{state: claimed, owner, at_ms}` then `{state: published, run, at_ms}` | tick TTL (`EX`) | [`Ticks::claim`], [`TickLease`] (scheduler) |
//! | `<prefix>:{flow:<flow>}:ticks-pending`       | sorted set: ticks claimed, not yet published (score: last renewal, ms) | tick TTL | [`Ticks::claim`]; emptied by [`TickLease::published`] |
//! | `<prefix>:{flow:<flow>}:audit`, `:audit-head`, `:audit-first` | the audit trail: a stream of hash-chained records, its head, its first kept record | none (trimmed by `audit.retention`) | `crate::audit` (through [`Store::connection`]) |
//!
//! `<flow>` is the flow id with every byte outside `[A-Za-z0-9._-]` percent-escaped.
//! `<key>` is a [`DeliveryKey`], one of:
//!
//! | mode                          | `<key>`                                   |
//! |-------------------------------|-------------------------------------------|
//! | name and content (`idempotency_mode: hash`) | `file:<sha-256 hex of the file name>:sha256:<content sha-256 hex>`; a record under the older `sha256:<hex>` key counts when its `file_name` is the same |
//! | content (`idempotency_mode: content`) | `sha256:<content sha-256 hex>`     |
//! | name (`idempotency_mode: name`)    | `name:<sha-256 hex of the file name>:<size>:<mtime unix s>` |
//! | download claim (before fetching)   | `download:<sha-256 hex of the remote name>:<size>:<mtime unix s>` |
//!
//! File names are hashed, never written raw, so no name can add a separator or a brace.
//!
//! # Guarantees and limits
//!
//! - A claim is `SET NX PX` inside a script that first checks the delivery record, so no
//!   file is claimed after its delivery was recorded (within retention).
//! - Only the token holder renews or deletes a claim or lock (compare-and-set scripts).
//! - A lease that lapses (worker paused longer than the lease, Redis unreachable) lets
//!   another worker take the file: keep leases well above a renewal round trip and let
//!   [`Claim::hold_while`] stop the transfer when the lease is lost.
//! - Commands are retried twice after a connection error; all of them are safe to repeat.
//! - Redis is one node, a Redis Cluster or a master found through Sentinel (`link.rs`);
//!   every script names keys of one flow only, so on a cluster it runs in one slot.
//! - Blocking commands (`BLPOP` on a flow's wake list) run on dedicated connections, never
//!   on the shared multiplexed one (see `flow_lock.rs`).

mod backend;
mod claim;
mod commit;
mod config;
mod connection;
mod coverage;
mod durability;
pub mod embedded;
mod error;
mod flow_lock;
pub mod intent;
pub mod keys;
mod lease;
mod link;
mod liveness;
mod record;
mod store;
mod tick;

pub(crate) use backend::Backend;
pub use claim::ClaimOutcome;
pub use commit::Recorded;
pub use config::StoreConfig;
pub(crate) use connection::Request;
pub use coverage::{CLOCK_MARGIN, FullRun, FullRuns};
pub use durability::DurabilityWarning;
pub use error::{ErrorKind, IdempotencyError};
pub use flow_lock::{FlowLocks, LockWait, Unlocked, WAKE_TTL};
pub use intent::{CommitIntent, CommitStart};
pub use keys::DeliveryKey;
pub use lease::{Claim, FlowLock};
pub use record::DeliveryRecord;
pub use store::Store;
pub use tick::{TickClaim, TickLease, TickPublished, Ticks};
