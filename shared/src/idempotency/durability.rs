//! What ferry needs from Redis to keep its promise, checked at start.
//!
//! The delivery records are the proof that a file went, and the claims keep two workers
//! off one file. A Redis that forgets them (no persistence, then a restart) or drops them
//! under memory pressure (an eviction policy other than `noeviction`) lets a file go twice.
//! ferry needs persistence on (AOF with `appendfsync everysec` or `always`, or RDB
//! snapshots at the least) and `maxmemory-policy noeviction`. Managed services often refuse
//! `CONFIG`; then nothing can be checked and nothing is reported.

use std::collections::BTreeMap;
use std::fmt;

use super::connection::Connection;
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
/// well or when the server does not let `CONFIG GET` be used. On a Redis Cluster every
/// master is read and a warning is given when any master has the weak setting (a record is
/// only as safe as the node its flow's slot lives on).
pub(crate) async fn check(conn: &Connection) -> Result<Vec<DurabilityWarning>, IdempotencyError> {
    let mut warnings = Vec::new();
    let appendonly = conn.config_get_everywhere("appendonly").await;
    let save = conn.config_get_everywhere("save").await;
    let fsync = conn.config_get_everywhere("appendfsync").await;
    let policy = conn.config_get_everywhere("maxmemory-policy").await;
    if appendonly.is_empty() {
        tracing::debug!("Redis refuses CONFIG GET: its durability settings cannot be checked");
        return Ok(warnings);
    }
    for (node, appendonly) in &appendonly {
        let at = |values: &BTreeMap<String, String>| values.get(node).cloned().unwrap_or_default();
        let (save, fsync, policy) = (at(&save), at(&fsync), at(&policy));
        let mut found = Vec::new();
        if appendonly == "no" && save.trim().is_empty() {
            found.push(DurabilityWarning::NoPersistence);
        }
        if appendonly == "yes" && fsync == "no" {
            found.push(DurabilityWarning::AofNotSynced);
        }
        if !policy.is_empty() && policy != "noeviction" {
            found.push(DurabilityWarning::Eviction(policy));
        }
        for warning in found {
            if !warnings.contains(&warning) {
                warnings.push(warning);
            }
        }
    }
    Ok(warnings)
}
