//! The embedded store: the same claims, leases, delivery records, flow locks, ticks, audit
//! chain and run queue as Redis gives a fleet, in one SQLite file for a single node
//! (`store: { kind: embedded, path: ... }` in `ferry.yaml`).
//!
//! Why SQLite: a maintained embedded database with crash-safe transactions. Every store
//! operation that Redis runs as one Lua script runs here as one `IMMEDIATE` transaction, so
//! the atomicity the scripts give (check the record and take the claim in one step; renew
//! or delete only with the owner's token) holds the same way; with `synchronous = FULL` a
//! committed transaction survives `kill -9` and a power cut.
//!
//! [`db::EmbeddedDb`] is the handle: one connection behind a mutex, used from blocking
//! tasks so the async runtime never waits on the disk. The parts, one file each:
//!
//! - `kv.rs`: expiring rows under the Redis key names (claims, records, intents, locks, full
//!   runs, ticks, audit heads), with the few Redis string commands the scripts use;
//! - `claims.rs`: the twins of the claim, commit and record scripts;
//! - `lock_wakes.rs`: in-process wake-ups of flow-lock waiters;
//! - `full_runs.rs`: the twin of the full-run script;
//! - `ticks.rs`: the scheduler's tick claims and pending ticks;
//! - `audit.rs`: the audit trail (rows in place of a stream).

pub(crate) mod audit;
pub(crate) mod claims;
pub(crate) mod db;
pub(crate) mod full_runs;
pub(crate) mod kv;
mod lock_wakes;
pub(crate) mod ticks;

pub use db::EmbeddedDb;
pub use lock_wakes::LockWakes;
