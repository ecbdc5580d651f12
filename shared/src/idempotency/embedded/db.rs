//! [`EmbeddedDb`]: the SQLite file behind the embedded store, opened once per process.
//!
//! - One connection, behind a mutex: SQLite serialises writers anyway, and one connection
//!   keeps every transaction of this process in order. Two processes on one file (a
//!   `ferry-worker run` beside a running node) are serialised by SQLite's file locks; a
//!   writer waits up to [`BUSY_TIMEOUT`] for the other.
//! - `journal_mode = WAL` and `synchronous = FULL`: a committed transaction is on disk
//!   before `commit` returns, so `kill -9` right after a claim or a delivery record loses
//!   neither.
//! - Every call runs on a blocking thread ([`EmbeddedDb::call`]): the runtime's workers never
//!   wait on `fsync`.
//! - Each part of the store creates its own tables (`CREATE TABLE IF NOT EXISTS`, listed in
//!   [`SCHEMA`]), so a newer ferry opening an older file adds what is missing.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, TransactionBehavior};

use crate::idempotency::IdempotencyError;

/// How long a writer waits for another process's transaction before giving up.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// The tables of every part of the embedded store, created when the file is opened. A part
/// adds its statements here (one entry per part, named for its file).
const SCHEMA: &[(&str, &str)] = &[
    (
        "meta",
        "CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);",
    ),
    ("kv", super::kv::SCHEMA),
    ("audit", super::audit::SCHEMA),
    ("ticks", super::ticks::SCHEMA),
    ("run_queue", crate::run_queue::SCHEMA),
];

/// The embedded store's database file. Cheap to clone (one shared connection).
#[derive(Clone)]
pub struct EmbeddedDb {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    conn: Mutex<Connection>,
}

impl fmt::Debug for EmbeddedDb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmbeddedDb")
            .field("path", &self.inner.path)
            .finish_non_exhaustive()
    }
}

impl EmbeddedDb {
    /// Opens (creating if needed) the database at `path` and its tables. The parent folder
    /// must exist: a missing one is a configuration error, not something to create silently
    /// under a mistyped path.
    pub async fn open(path: &Path) -> Result<Self, IdempotencyError> {
        let owned = path.to_owned();
        let conn = tokio::task::spawn_blocking(move || open_blocking(&owned))
            .await
            .map_err(|join| embedded_error(path, "open", join.to_string()))??;
        Ok(EmbeddedDb {
            inner: Arc::new(Inner {
                path: path.to_owned(),
                conn: Mutex::new(conn),
            }),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Runs `work` inside one `IMMEDIATE` transaction (the write lock taken at the start, so
    /// nothing another process writes can interleave), on a blocking thread, and commits it
    /// when `work` returns `Ok`. `op` names the operation in errors, like the Redis store's.
    pub async fn call<T, F>(&self, op: &'static str, work: F) -> Result<T, IdempotencyError>
    where
        T: Send + 'static,
        F: FnOnce(&rusqlite::Transaction<'_>) -> rusqlite::Result<T> + Send + 'static,
    {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = inner
                .conn
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(|e| from_sqlite(&inner.path, op, e))?;
            let out = work(&tx).map_err(|e| from_sqlite(&inner.path, op, e))?;
            tx.commit().map_err(|e| from_sqlite(&inner.path, op, e))?;
            Ok(out)
        })
        .await
        .map_err(|join| embedded_error(&self.inner.path, op, join.to_string()))?
    }
}

/// Opens the file, retrying for up to [`BUSY_TIMEOUT`] while another process holds it:
/// switching to WAL and creating tables can answer "database is locked" at once, without
/// SQLite's busy handler (two processes opening a new file at the same moment).
fn open_blocking(path: &Path) -> Result<Connection, IdempotencyError> {
    let deadline = std::time::Instant::now() + BUSY_TIMEOUT;
    loop {
        match try_open(path) {
            Err(e)
                if matches!(
                    e.sqlite_error_code(),
                    Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
                ) && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(20));
            }
            opened => return opened.map_err(|e| from_sqlite(path, "open", e)),
        }
    }
}

fn try_open(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    for (_part, ddl) in SCHEMA {
        conn.execute_batch(ddl)?;
    }
    Ok(conn)
}

/// Sorts a SQLite error: a busy or locked database (another process holds the write lock
/// past [`BUSY_TIMEOUT`]), a full disk or an I/O error is worth a retry; anything else is
/// not.
fn from_sqlite(path: &Path, op: &'static str, err: rusqlite::Error) -> IdempotencyError {
    use rusqlite::ErrorCode as C;
    let transient = matches!(
        err.sqlite_error_code(),
        Some(C::DatabaseBusy | C::DatabaseLocked | C::DiskFull | C::SystemIoFailure)
    );
    IdempotencyError::Embedded {
        path: path.display().to_string(),
        op,
        detail: err.to_string(),
        transient,
    }
}

fn embedded_error(path: &Path, op: &'static str, detail: String) -> IdempotencyError {
    IdempotencyError::Embedded {
        path: path.display().to_string(),
        op,
        detail,
        transient: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_committed_write_is_read_back_after_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let db = EmbeddedDb::open(&path).await.unwrap();
        db.call("put", |tx| {
            tx.execute("INSERT INTO meta (name, value) VALUES ('k', 'v')", [])
        })
        .await
        .unwrap();
        drop(db);
        let db = EmbeddedDb::open(&path).await.unwrap();
        let value: String = db
            .call("get", |tx| {
                tx.query_row("SELECT value FROM meta WHERE name = 'k'", [], |row| {
                    row.get(0)
                })
            })
            .await
            .unwrap();
        assert_eq!(value, "v");
    }

    #[tokio::test]
    async fn a_missing_folder_is_an_error_that_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("no-such-folder").join("state.db");
        let error = EmbeddedDb::open(&path).await.unwrap_err();
        assert!(error.to_string().contains("no-such-folder"), "{error}");
    }
}
