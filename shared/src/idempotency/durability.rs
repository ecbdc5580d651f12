//! What ferry needs from Redis to keep its promise, checked at start.
//!
//! The delivery records are the proof that a file went, and the claims keep two workers
//! off one file. A Redis that forgets them (no persistence, then a restart) or drops them
//! under memory pressure (an eviction policy other than `noeviction`) lets a file go twice.
//! ferry needs persistence on (AOF with `appendfsync everysec` or `always`, or RDB
//! snapshots at the least) and `maxmemory-policy noeviction`. Managed services often refuse
//! `CONFIG`; then nothing can be checked and nothing is reported.

use std::fmt;

use redis::Cmd;

use super::connection::{Connection, Request};
use super::error::IdempotencyError;

/// A Redis setting that weakens ferry's guarantees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DurabilityWarning {
    /// Neither AOF nor RDB snapshots: a restart forgets every record and claim.
    NoPersistence,
    /// AOF on, but never fsynced by Redis (`appendfsync no`): a crash can lose recent records.
    AofNotSynced,
    /// Keys may be evicted under memory pressure (the policy named).
    Eviction(String),
}

impl fmt::Display for DurabilityWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DurabilityWarning::NoPersistence => f.write_str(
                "Redis keeps nothing on disk (appendonly no, no save points): a restart forgets \
                 every delivery record, and files may be sent again; set appendonly yes",
            ),
            DurabilityWarning::AofNotSynced => f.write_str(
                "Redis never fsyncs its AOF (appendfsync no): a crash can lose the latest \
                 delivery records; set appendfsync everysec",
            ),
            DurabilityWarning::Eviction(policy) => write!(
                f,
                "Redis may evict keys under memory pressure (maxmemory-policy {policy}): a lost \
                 record or claim lets a file go twice; set maxmemory-policy noeviction"
            ),
        }
    }
}

/// Reads the server's settings and lists what weakens the guarantees; empty when all is
/// well or when the server does not let `CONFIG GET` be used.
pub(crate) async fn check(conn: &Connection) -> Result<Vec<DurabilityWarning>, IdempotencyError> {
    let mut warnings = Vec::new();
    let Some(appendonly) = setting(conn, "appendonly").await else {
        tracing::debug!("Redis refuses CONFIG GET: its durability settings cannot be checked");
        return Ok(warnings);
    };
    let save = setting(conn, "save").await.unwrap_or_default();
    let fsync = setting(conn, "appendfsync").await.unwrap_or_default();
    let policy = setting(conn, "maxmemory-policy").await.unwrap_or_default();
    if appendonly == "no" && save.trim().is_empty() {
        warnings.push(DurabilityWarning::NoPersistence);
    }
    if appendonly == "yes" && fsync == "no" {
        warnings.push(DurabilityWarning::AofNotSynced);
    }
    if !policy.is_empty() && policy != "noeviction" {
        warnings.push(DurabilityWarning::Eviction(policy));
    }
    Ok(warnings)
}

/// `CONFIG GET name`, or `None` when refused or absent.
async fn setting(conn: &Connection, name: &str) -> Option<String> {
    let mut cmd = Cmd::new();
    cmd.arg("CONFIG").arg("GET").arg(name);
    let pairs: Vec<String> = conn.run("config_get", &Request::Cmd(cmd)).await.ok()?;
    pairs.get(1).cloned()
}
