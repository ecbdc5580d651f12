//! The TLS 1.2 fallback: when a data connection under TLS 1.3 fails because it could not
//! resume the control session, reconnect capped at TLS 1.2 and run the operation once more.
//!
//! Why: TLS 1.3 session tickets are single use. ProFTPD (and others) refuse a data
//! connection that does not resume the control session, and under TLS 1.3 a session can run
//! out of tickets: the third data connection of a ProFTPD session makes a full handshake and
//! gets `425` (see `rust-crates.md`). TLS 1.2 sessions resume any number of times.
//!
//! [`Tls12Fallback::should_retry`] decides, once per session: the session negotiated TLS 1.3,
//! the failed data connection's handshake was not a resumption (or failed), and the failure
//! looks like the transport (a lost or refused data connection, `425`/`426`/`450`/`451`/
//! `522`). The session then reports [`Tls12Fallback::fell_back`], and the partner's pool opens
//! its later sessions at TLS 1.2 directly (`transfer/pool.rs`).

use tracing::warn;

use super::config::TlsVersion;
use super::error::{FtpsError, FtpsErrorKind};
use super::tls_session_reuse::{DataHandshake, TlsObservations};

/// A session's TLS version cap, and whether it was lowered.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Tls12Fallback {
    max_version: TlsVersion,
    fell_back: bool,
}

impl Tls12Fallback {
    /// Starts at the configured highest version.
    pub(crate) fn new(max_version: TlsVersion) -> Self {
        Tls12Fallback {
            max_version,
            fell_back: false,
        }
    }

    /// The highest version the next connection offers.
    pub(crate) fn max_version(&self) -> TlsVersion {
        self.max_version
    }

    /// Whether this session fell back (the caller should remember it for the partner).
    pub(crate) fn fell_back(&self) -> bool {
        self.fell_back
    }

    /// Whether `err`, seen with these handshakes, calls for the fallback; if so, records it
    /// (the next connection offers TLS 1.2 at most) and says so at warning level.
    pub(crate) fn should_retry(
        &mut self,
        host: &str,
        tls: Option<&TlsObservations>,
        err: &FtpsError,
    ) -> bool {
        if self.fell_back || self.max_version != TlsVersion::Tls13 {
            return false;
        }
        let Some(tls) = tls else { return false };
        let tls13 = tls
            .control
            .as_ref()
            .is_some_and(|c| c.version == TlsVersion::Tls13);
        let not_resumed = matches!(
            tls.last_data,
            Some(DataHandshake::Full | DataHandshake::Failed)
        );
        let transport = matches!(
            err.kind(),
            FtpsErrorKind::ConnectionLost
                | FtpsErrorKind::TlsHandshake
                | FtpsErrorKind::PassiveMode
        ) || err
            .reply()
            .is_some_and(|r| matches!(r.code, 425 | 426 | 450 | 451 | 522));
        if !(tls13 && not_resumed && transport) {
            return false;
        }
        warn!(
            host,
            error = %err,
            "a data connection failed without TLS session reuse under TLS 1.3; reconnecting \
             with TLS 1.2 (set tls.max_version: \"1.2\" for this partner)"
        );
        self.max_version = TlsVersion::Tls12;
        self.fell_back = true;
        true
    }
}
