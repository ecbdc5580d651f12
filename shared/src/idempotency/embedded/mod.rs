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
//! tasks so the async runtime never waits on the disk.

pub(crate) mod db;

pub use db::EmbeddedDb;
