//! The embedded twin of `RECORD_FULL_RUN` (`coverage.rs`): a flow's latest full run, which
//! only ever moves forward (a record with a later or equal start is kept).

use std::time::Duration;

use rusqlite::Transaction;

use super::kv;

/// Writes `json` (a run that started at `started_ms`) for `ttl` unless the stored run started
/// as late or later; says whether it wrote.
pub(crate) fn record(
    tx: &Transaction<'_>,
    key: &str,
    started_ms: i64,
    json: &str,
    ttl: Duration,
) -> rusqlite::Result<bool> {
    if let Some(current) = kv::get(tx, key)? {
        let current_start = serde_json::from_str::<serde_json::Value>(&current)
            .ok()
            .and_then(|v| v.get("started_ms")?.as_i64());
        if current_start.is_some_and(|start| start >= started_ms) {
            return Ok(false);
        }
    }
    kv::set(tx, key, json, Some(ttl))?;
    Ok(true)
}
