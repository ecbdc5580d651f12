//! The embedded twin of the audit trail's Redis stream (`audit/store.rs`): a flow's records
//! are rows of `audit_records` (`stream` = the stream's key name), their order the row id.
//! The head and the first kept record are [`kv`] rows under the Redis key names, with no
//! expiry.
//!
//! Entry ids look like a stream's, `<ms>-<row id>`, and order the same way: [`page`] reads
//! after the row id in an id. [`append`] is the `APPEND` script: the head check, the insert,
//! the new head and the retention trim in one transaction, so the chain never forks here
//! either.

use rusqlite::{Transaction, params};

use super::kv::{self, now_ms};

/// The records, created when the file is opened (`db.rs`).
pub(crate) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS audit_records (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    stream TEXT NOT NULL,
    at_ms INTEGER NOT NULL,
    record BLOB NOT NULL,
    hash TEXT NOT NULL,
    hmac TEXT
);
CREATE INDEX IF NOT EXISTS audit_records_stream ON audit_records (stream, id);
";

/// The rows of one flow's trail (the Redis key names).
#[derive(Debug, Clone)]
pub(crate) struct AuditRows {
    pub(crate) stream: String,
    pub(crate) head: String,
    pub(crate) first: String,
}

/// One record to append and the trim that follows.
#[derive(Debug, Clone)]
pub(crate) struct NewRecord {
    pub(crate) expected_head: String,
    pub(crate) new_head: String,
    pub(crate) record: Vec<u8>,
    pub(crate) hash: String,
    pub(crate) hmac: Option<String>,
    /// `0`: no limit.
    pub(crate) max_records: u64,
    /// Records older than this (Unix ms) are trimmed; `0`: no limit.
    pub(crate) min_ms: i64,
}

/// One row read back: its entry id, record bytes, hash and HMAC.
pub(crate) type Row = (String, Vec<u8>, String, Option<String>);

/// `APPEND`: `Ok(Ok(id))` written, `Ok(Err(head))` the head had moved to `head`.
pub(crate) fn append(
    tx: &Transaction<'_>,
    rows: &AuditRows,
    new: &NewRecord,
) -> rusqlite::Result<Result<String, String>> {
    let head = kv::get(tx, &rows.head)?.unwrap_or_default();
    if head != new.expected_head {
        return Ok(Err(head));
    }
    let at = now_ms();
    tx.execute(
        "INSERT INTO audit_records (stream, at_ms, record, hash, hmac) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![rows.stream, at, new.record, new.hash, new.hmac],
    )?;
    let id = format!("{at}-{}", tx.last_insert_rowid());
    kv::set(tx, &rows.head, &new.new_head, None)?;
    let mut trimmed = 0;
    if new.max_records > 0 {
        trimmed += tx.execute(
            "DELETE FROM audit_records WHERE stream = ?1 AND id NOT IN
               (SELECT id FROM audit_records WHERE stream = ?1 ORDER BY id DESC LIMIT ?2)",
            params![
                rows.stream,
                i64::try_from(new.max_records).unwrap_or(i64::MAX)
            ],
        )?;
    }
    if new.min_ms > 0 {
        trimmed += tx.execute(
            "DELETE FROM audit_records WHERE stream = ?1 AND at_ms < ?2",
            params![rows.stream, new.min_ms],
        )?;
    }
    if trimmed > 0
        && let Some((first, _, _, _)) = read(tx, &rows.stream, None, 1, false)?.into_iter().next()
    {
        kv::set(tx, &rows.first, &first, None)?;
    }
    Ok(Ok(id))
}

/// Up to `count` rows after the entry id `after` (from the start when `None`), oldest first;
/// newest first with `newest_first` (and then `after` is not used).
pub(crate) fn read(
    tx: &Transaction<'_>,
    stream: &str,
    after: Option<&str>,
    count: usize,
    newest_first: bool,
) -> rusqlite::Result<Vec<Row>> {
    let after_row = after
        .and_then(|id| id.rsplit_once('-'))
        .and_then(|(_, row)| row.parse::<i64>().ok())
        .unwrap_or(0);
    let sql = if newest_first {
        "SELECT id, at_ms, record, hash, hmac FROM audit_records
         WHERE stream = ?1 ORDER BY id DESC LIMIT ?3"
    } else {
        "SELECT id, at_ms, record, hash, hmac FROM audit_records
         WHERE stream = ?1 AND id > ?2 ORDER BY id LIMIT ?3"
    };
    let mut stmt = tx.prepare(sql)?;
    let limit = i64::try_from(count).unwrap_or(i64::MAX);
    let rows = stmt.query_map(params![stream, after_row, limit], |row| {
        let id: i64 = row.get(0)?;
        let at: i64 = row.get(1)?;
        Ok((format!("{at}-{id}"), row.get(2)?, row.get(3)?, row.get(4)?))
    })?;
    rows.collect()
}
