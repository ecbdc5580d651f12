//! A bounded pool of FTPS sessions to one partner.
//!
//! Opening a session (TCP, `AUTH TLS`, login) costs about 100 ms, so the files of a run
//! share a few sessions: at most `max_connections` are open to the partner at once, each
//! is reused for many files, and one that saw any error is discarded rather than handed
//! to the next file (a half-read reply or a dead data channel must not leak into another
//! transfer). Built on `deadpool`'s managed pool.
//!
//! A session that had to fall back to TLS 1.2 (a server that refuses TLS 1.3 data
//! connections without ticket reuse, see [`crate::ftps`]) makes the pool open every later
//! session to that partner at TLS 1.2 directly, instead of paying for a refused data
//! connection and a reconnect in each session.

use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use deadpool::managed::{self, Metrics, Object, Pool, PoolError, RecycleError, RecycleResult};

use crate::ftps::{FtpsError, Session, SessionConfig, TlsVersion};

/// A session idle for longer than this is closed rather than reused: servers drop idle
/// control connections (vsftpd after 5 minutes by default, some much sooner), and a file
/// should not spend an attempt finding that out.
const MAX_IDLE: Duration = Duration::from_secs(60);

/// Creates sessions for the pool and decides whether a returned one may be reused.
#[derive(Debug)]
pub struct SessionManager {
    config: SessionConfig,
    /// Set once a session of this pool fell back to TLS 1.2.
    tls12_only: AtomicBool,
}

/// A session as the pool keeps it: `reusable` is cleared when it is lent out and set again
/// only when the borrower says its work on it succeeded.
#[derive(Debug)]
pub struct PooledSession {
    session: Session,
    reusable: bool,
}

impl managed::Manager for SessionManager {
    type Type = PooledSession;
    type Error = FtpsError;

    async fn create(&self) -> Result<PooledSession, FtpsError> {
        let session = if self.tls12_only.load(Ordering::Relaxed) {
            let mut config = self.config.clone();
            config.tls.max_version = TlsVersion::Tls12;
            Session::connect(&config).await?
        } else {
            Session::connect(&self.config).await?
        };
        Ok(PooledSession {
            session,
            reusable: false,
        })
    }

    async fn recycle(
        &self,
        pooled: &mut PooledSession,
        metrics: &Metrics,
    ) -> RecycleResult<FtpsError> {
        if pooled.session.fell_back_to_tls12() && !self.tls12_only.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                host = %self.config.host,
                "the partner refuses TLS 1.3 data connections without session reuse; new \
                 sessions to it use TLS 1.2 (set tls.max_version: \"1.2\" to start there)"
            );
        }
        if !pooled.reusable {
            return Err(RecycleError::message(
                "the session's last use failed or was interrupted; a new one is opened",
            ));
        }
        if metrics.last_used() > MAX_IDLE {
            return Err(RecycleError::message(
                "the session was idle too long to trust; a new one is opened",
            ));
        }
        pooled.reusable = false;
        Ok(())
    }
}

/// At most `max_connections` sessions to one partner, shared by the files of all runs
/// that use this partner in this process.
#[derive(Debug, Clone)]
pub struct SessionPool {
    pool: Pool<SessionManager>,
}

impl SessionPool {
    /// A pool that opens sessions with `config`, at most `max_connections` at once (at
    /// least one).
    pub fn new(config: SessionConfig, max_connections: usize) -> Self {
        let pool = Pool::builder(SessionManager {
            config,
            tls12_only: AtomicBool::new(false),
        })
        .max_size(max_connections.max(1))
        .build()
        // Only fails when a timeout is set without a runtime; none is set here.
        .unwrap_or_else(|e| unreachable!("session pool without timeouts: {e}"));
        SessionPool { pool }
    }

    /// Borrows a session: an idle one, a new one while fewer than `max_connections` are
    /// open, or the next one given back. Fails when a new session cannot be opened.
    pub async fn get(&self) -> Result<SessionLease, FtpsError> {
        match self.pool.get().await {
            Ok(object) => Ok(SessionLease { object }),
            Err(PoolError::Backend(e)) => Err(e),
            Err(other) => Err(FtpsError::new(
                crate::ftps::FtpsErrorKind::ConnectionLost,
                "session pool",
                other.to_string(),
            )),
        }
    }

    /// How many sessions are open (idle or lent out).
    pub fn open_sessions(&self) -> usize {
        self.pool.status().size
    }

    /// The largest number of sessions this pool opens at once.
    pub fn max_sessions(&self) -> usize {
        self.pool.status().max_size
    }

    /// Closes the idle sessions politely (`QUIT`); sessions lent out are closed when they
    /// come back. The pool stays usable (new sessions are opened on demand).
    pub async fn close_idle(&self) {
        let idle = self.pool.retain(|_, _| false).removed;
        for pooled in idle {
            // A failed QUIT only means the server hung up first.
            let _ = pooled.session.quit().await;
        }
    }
}

/// A session borrowed from a [`SessionPool`]. Dropped without [`SessionLease::done`]
/// (an error, a cancelled transfer), the session is closed instead of reused.
#[derive(Debug)]
pub struct SessionLease {
    object: Object<SessionManager>,
}

impl SessionLease {
    /// Marks the session as healthy: it goes back to the pool for the next file.
    pub fn done(mut self) {
        self.object.reusable = true;
    }

    /// Ends the borrow with an operation's result: a session whose operation succeeded
    /// goes back to the pool, one whose operation failed is closed.
    pub fn keep_if_ok<T, E>(self, result: Result<T, E>) -> Result<T, E> {
        if result.is_ok() {
            self.done();
        }
        result
    }
}

impl Deref for SessionLease {
    type Target = Session;

    fn deref(&self) -> &Session {
        &self.object.session
    }
}

impl DerefMut for SessionLease {
    fn deref_mut(&mut self) -> &mut Session {
        &mut self.object.session
    }
}
