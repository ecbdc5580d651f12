//! The audit trail: one tamper-evident record per file event, for every flow, across the
//! whole fleet.
//!
//! An operator asks "did this file go, when, by which worker, with which bytes, and if not,
//! why?" and must be able to trust the answer later. Each file event (transferred,
//! duplicate, failed, source deleted, remote deleted, left to another worker, skipped link)
//! becomes an [`AuditRecord`] (`record.rs`), and the records of one flow form one hash chain
//! (`chain.rs`): each carries the SHA-256 of the record before it and, with `audit.hmac_key`
//! set, an HMAC-SHA256 under a key that only the fleet holds. The chain lives in a Redis
//! stream per flow beside the flow's other keys, appended by a script that only adds a
//! record linked to the current head, so workers appending at once never fork it
//! (`store.rs`). Retention trims the stream from its start and the chain stays verifiable
//! from its first kept record.
//!
//! - `trail.rs`: [`AuditLog`], what the engine writes through (span event + append, and what
//!   happens when Redis refuses);
//! - `verify.rs`: [`verify`], which names the first record that breaks the chain;
//! - `export.rs`: [`read`], a flow's (or a file's) history, and the JSON Lines export.
//!
//! **What it proves, and what not.** Editing, deleting or reordering records is detected by
//! anyone running `audit verify`. Without an HMAC key, whoever can write to Redis can also
//! rebuild a consistent chain; with one, they cannot without the key. Removing whole records
//! from the *start* of the trail looks like a retention trim if the attacker also moves the
//! `audit-first` marker: export the trail regularly (`ferry-worker audit export`) to storage
//! that Redis' writers cannot change, and compare.

mod chain;
mod error;
mod export;
mod record;
mod store;
mod trail;
mod verify;

pub use chain::{ChainKey, GENESIS, record_hash};
pub use error::{AuditError, AuditErrorKind};
pub use export::{ExportedRecord, Filter, parse_since, read};
pub use record::{AuditDirection, AuditEvent, AuditOutcome, AuditRecord};
pub use store::{Appended, AuditStore, Head, Retention, StoredEntry};
pub use trail::{AuditLog, MAX_PENDING};
pub use verify::{BreakKind, BrokenRecord, Verdict, verify};
