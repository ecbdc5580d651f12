//! The embedded store's file, read directly: what a test asserts about the rows a run left
//! (delivery records, claims, intents), the way `redis-cli` is used for Redis.

use std::path::Path;

/// The live rows (not expired) of the embedded store at `path` whose key starts with
/// `prefix`, sorted by key: (key, value).
pub fn live_rows(path: &Path, prefix: &str) -> Vec<(String, String)> {
    let conn =
        rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap_or_else(|e| panic!("opening {}: {e}", path.display()));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis();
    let now = i64::try_from(now).expect("ms");
    let mut stmt = conn
        .prepare(
            "SELECT key, value FROM kv
             WHERE substr(key, 1, length(?1)) = ?1 AND (expires_at_ms IS NULL OR expires_at_ms > ?2)
             ORDER BY key",
        )
        .expect("query");
    stmt.query_map(rusqlite::params![prefix, now], |row| {
        Ok((row.get(0)?, row.get(1)?))
    })
    .expect("rows")
    .collect::<Result<_, _>>()
    .expect("rows")
}
