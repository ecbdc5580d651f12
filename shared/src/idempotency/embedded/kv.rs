//! Expiring key/value rows: what the embedded store keeps where Redis keeps string keys
//! (claims, delivery records, commit intents, flow locks, full runs, tick states, audit
//! heads), under the same key names (built in `keys.rs`).
//!
//! Each row has an `expires_at_ms` (Unix milliseconds, `NULL` for never). A row whose time has
//! passed counts as absent for every read and is overwritten by any write, exactly as an
//! expired Redis key; expired rows are deleted now and then ([`maybe_purge`]), never needed
//! for correctness. Every function here runs inside the caller's transaction
//! ([`EmbeddedDb::call`](super::EmbeddedDb::call)), so a sequence of them is as atomic as the
//! Lua script it stands for.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rusqlite::{OptionalExtension, Transaction, params};

/// The table, created when the file is opened (`db.rs`).
pub(crate) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS kv (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    expires_at_ms INTEGER
);
CREATE INDEX IF NOT EXISTS kv_expiry ON kv (expires_at_ms) WHERE expires_at_ms IS NOT NULL;
";

/// One write in this many purges the expired rows too.
const PURGE_EVERY: u64 = 256;

/// The clock rows expire by: Unix milliseconds.
pub(crate) fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// `now + ttl` in milliseconds (at least 1 ms ahead, as Redis' `PX`).
pub(crate) fn deadline(ttl: Duration) -> i64 {
    let ms = i64::try_from(ttl.as_millis())
        .unwrap_or(i64::MAX / 2)
        .max(1);
    now_ms().saturating_add(ms)
}

/// `GET`: the live value of `key`.
pub(crate) fn get(tx: &Transaction<'_>, key: &str) -> rusqlite::Result<Option<String>> {
    tx.query_row(
        "SELECT value FROM kv WHERE key = ?1 AND (expires_at_ms IS NULL OR expires_at_ms > ?2)",
        params![key, now_ms()],
        |row| row.get(0),
    )
    .optional()
}

/// `SET key value [PX ttl]` (no `ttl`: never expires).
pub(crate) fn set(
    tx: &Transaction<'_>,
    key: &str,
    value: &str,
    ttl: Option<Duration>,
) -> rusqlite::Result<()> {
    tx.execute(
        "INSERT INTO kv (key, value, expires_at_ms) VALUES (?1, ?2, ?3)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value, expires_at_ms = excluded.expires_at_ms",
        params![key, value, ttl.map(deadline)],
    )?;
    maybe_purge(tx)
}

/// `SET key value KEEPTTL`: a live row keeps its expiry; an absent one never expires.
pub(crate) fn set_keep_ttl(tx: &Transaction<'_>, key: &str, value: &str) -> rusqlite::Result<()> {
    if get(tx, key)?.is_some() {
        tx.execute(
            "UPDATE kv SET value = ?2 WHERE key = ?1",
            params![key, value],
        )?;
        return Ok(());
    }
    set(tx, key, value, None)
}

/// `SET key value NX PX ttl`: writes only when `key` is absent (or expired); says whether it
/// wrote.
pub(crate) fn set_nx(
    tx: &Transaction<'_>,
    key: &str,
    value: &str,
    ttl: Duration,
) -> rusqlite::Result<bool> {
    if get(tx, key)?.is_some() {
        return Ok(false);
    }
    set(tx, key, value, Some(ttl))?;
    Ok(true)
}

/// `DEL`: says whether a live row was deleted.
pub(crate) fn del(tx: &Transaction<'_>, key: &str) -> rusqlite::Result<bool> {
    let live = get(tx, key)?.is_some();
    tx.execute("DELETE FROM kv WHERE key = ?1", params![key])?;
    Ok(live)
}

/// `PEXPIRE`: a live row now expires `ttl` from now; says whether there was one.
pub(crate) fn pexpire(tx: &Transaction<'_>, key: &str, ttl: Duration) -> rusqlite::Result<bool> {
    let changed = tx.execute(
        "UPDATE kv SET expires_at_ms = ?2
         WHERE key = ?1 AND (expires_at_ms IS NULL OR expires_at_ms > ?3)",
        params![key, deadline(ttl), now_ms()],
    )?;
    Ok(changed == 1)
}

/// `PTTL` in milliseconds: `None` when the row is absent or never expires.
pub(crate) fn pttl(tx: &Transaction<'_>, key: &str) -> rusqlite::Result<Option<i64>> {
    let now = now_ms();
    let at: Option<Option<i64>> = tx
        .query_row(
            "SELECT expires_at_ms FROM kv WHERE key = ?1 AND (expires_at_ms IS NULL OR expires_at_ms > ?2)",
            params![key, now],
            |row| row.get(0),
        )
        .optional()?;
    Ok(at.flatten().map(|at| at - now))
}

/// Deletes `key` if it holds `token`; says whether it did (a lease's release).
pub(crate) fn delete_if_owner(
    tx: &Transaction<'_>,
    key: &str,
    token: &str,
) -> rusqlite::Result<bool> {
    if get(tx, key)?.as_deref() != Some(token) {
        return Ok(false);
    }
    del(tx, key)
}

/// Renews `key` for `ttl` if it holds `token`; says whether it did (a lease's renewal).
pub(crate) fn renew_if_owner(
    tx: &Transaction<'_>,
    key: &str,
    token: &str,
    ttl: Duration,
) -> rusqlite::Result<bool> {
    if get(tx, key)?.as_deref() != Some(token) {
        return Ok(false);
    }
    pexpire(tx, key, ttl)
}

/// Every [`PURGE_EVERY`]th write of the process deletes the rows that have expired, so that a
/// file used for years does not keep every claim it ever held.
fn maybe_purge(tx: &Transaction<'_>) -> rusqlite::Result<()> {
    static WRITES: AtomicU64 = AtomicU64::new(0);
    if WRITES.fetch_add(1, Ordering::Relaxed) % PURGE_EVERY == PURGE_EVERY - 1 {
        purge_expired(tx)?;
    }
    Ok(())
}

/// Deletes every expired row; returns how many.
pub(crate) fn purge_expired(tx: &Transaction<'_>) -> rusqlite::Result<usize> {
    tx.execute(
        "DELETE FROM kv WHERE expires_at_ms IS NOT NULL AND expires_at_ms <= ?1",
        params![now_ms()],
    )
}

#[cfg(test)]
mod tests {
    use super::super::EmbeddedDb;
    use super::*;

    #[tokio::test]
    async fn an_expired_row_counts_as_absent_and_is_purged() {
        let dir = tempfile::tempdir().unwrap();
        let db = EmbeddedDb::open(&dir.path().join("state.db"))
            .await
            .unwrap();
        let (first, second, live, purged) = db
            .call("test", |tx| {
                set(tx, "a", "1", Some(Duration::from_millis(1)))?;
                std::thread::sleep(Duration::from_millis(5));
                let first = set_nx(tx, "a", "2", Duration::from_secs(60))?;
                let second = set_nx(tx, "a", "3", Duration::from_secs(60))?;
                set(tx, "b", "1", Some(Duration::from_millis(1)))?;
                std::thread::sleep(Duration::from_millis(5));
                let live = get(tx, "a")?;
                Ok((first, second, live, purge_expired(tx)?))
            })
            .await
            .unwrap();
        assert!(first && !second);
        assert_eq!(live.as_deref(), Some("2"));
        assert_eq!(purged, 1);
    }
}
